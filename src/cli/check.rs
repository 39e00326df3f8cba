//! `warden check PATH...`: validate policy for GitOps CI.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Environment};
use crate::limits::LiveState;

/// Prints every problem as `file:line:col: severity: message`; exit 0 valid, 1 invalid.
pub fn run(paths: &[PathBuf]) -> ExitCode {
    let mut valid = true;
    for path in paths {
        let sources = match config::source::read(path) {
            Ok(sources) => sources,
            Err(problem) => {
                println!("{problem}");
                valid = false;
                continue;
            }
        };
        let live = LiveState::default();
        match config::compile(&sources, &Environment::offline(&live)) {
            Ok(compiled) => {
                for warning in &compiled.warnings {
                    println!("{warning}");
                }
                let s = &compiled.snapshot;
                println!(
                    "{}: ok: version {} ({} agents, {} providers, {} keys)",
                    path.display(),
                    s.version,
                    s.agents.len(),
                    s.providers.len(),
                    s.identity.keys.len()
                );
            }
            Err(problems) => {
                for problem in &problems {
                    println!("{problem}");
                }
                valid = false;
            }
        }
    }
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
