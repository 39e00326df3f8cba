//! `warden keygen`: an Ed25519 key pair for a token issuer, an agent, or the audit signer.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use crate::audit::keys;

/// Writes the private key to `out` (PKCS#8 PEM, mode 0600, never over an existing file) and
/// the public key, base64 of the raw 32 bytes, to `out.pub` and stdout.
pub fn run(out: &Path) -> ExitCode {
    match write_pair(out) {
        Ok(public) => {
            println!("private key: {} (keep it secret)", out.display());
            println!("public key:  {public}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warden: {e}");
            ExitCode::from(1)
        }
    }
}

fn write_pair(out: &Path) -> Result<String, String> {
    let key = keys::generate().map_err(|e| format!("no randomness: {e}"))?;
    let pem = keys::signing_key_pem(&key)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    file.write_all(pem.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let public = keys::public_key_base64(&key.verifying_key());
    let public_path = format!("{}.pub", out.display());
    std::fs::write(&public_path, format!("{public}\n"))
        .map_err(|e| format!("cannot write {public_path}: {e}"))?;
    Ok(public)
}
