//! `warden audit verify`: check an audit log's chain and checkpoint signatures.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::audit::{keys, verify};

/// Exit 0 when intact, 1 when tampered or incomplete (naming the first bad record) or, with
/// `--key`, when records are not covered by a signed checkpoint; 2 when the key argument is
/// unusable.
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
            let summary = format!(
                "instance {}, {} records (seq {}..{}), {} checkpoints",
                report.instance,
                report.records,
                report.first_seq,
                report.last_seq,
                report.checkpoints
            );
            let first_unsigned = report.last_seq + 1 - report.unsigned_tail;
            if key.is_some() && report.unsigned_tail > 0 {
                // What no signature covers could have been written by anyone who can write the
                // file (a log with its checkpoints removed and its chain recomputed looks intact).
                println!(
                    "unsigned: {summary}; {} records (seq {first_unsigned}..{}) are not covered by any signed checkpoint (a live log's newest records are signed at its next checkpoint)",
                    report.unsigned_tail, report.last_seq
                );
                return ExitCode::from(1);
            }
            match key {
                Some(_) => println!("intact: {summary}, signatures valid"),
                None => println!("intact: {summary}; signatures not checked (no --key)"),
            }
            if report.unsigned_tail > 0 {
                println!(
                    "note: the last {} records (seq {first_unsigned}..{}) come after the last checkpoint and are not signed yet",
                    report.unsigned_tail, report.last_seq
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
