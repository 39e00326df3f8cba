//! The `warden` binary: parse the command line, run one command, exit with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = warden::cli::Cli::parse();
    warden::cli::run(cli)
}
