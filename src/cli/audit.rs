//! `warden audit verify`: check an audit log's chain and checkpoint signatures.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::audit::{keys, verify};

/// Exit 0 when intact, 1 when tampered or incomplete (naming the first bad record), 2 when the
/// key argument is unusable.
pub fn verify(key: Option<&str>, paths: &[PathBuf]) -> ExitCode {
    let key = match key.map(read_key).transpose() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("warden: --key: {e}");
            return ExitCode::from(2);
        }
    };
    let files = verify::expand(paths);
    match verify::verify(&files, key.as_ref()) {
        Ok(report) => {
            println!(
                "intact: instance {}, {} records (seq {}..{}), {} checkpoints{}",
                report.instance,
                report.records,
                report.first_seq,
                report.last_seq,
                report.checkpoints,
                if key.is_some() {
                    ", signatures valid"
                } else {
                    "; signatures not checked (no --key)"
                }
            );
            if report.unsigned_tail > 0 {
                println!(
                    "note: the last {} records come after the last checkpoint and are not signed yet",
                    report.unsigned_tail
                );
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            println!("tampered: {failure}");
            ExitCode::from(1)
        }
    }
}

/// `--key` is base64 of the raw public key, or a file holding it (`warden keygen` writes
/// `KEY.pub`).
fn read_key(arg: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let text = match std::fs::read_to_string(arg) {
        Ok(text) => text,
        Err(_) => arg.to_string(),
    };
    keys::parse_public_key(&text)
}
