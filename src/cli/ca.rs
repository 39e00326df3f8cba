//! `warden ca new` and `warden ca bundle`: the interception CA an HTTPS_PROXY agent must trust.
//!
//! Most clients trust one file: pointing `SSL_CERT_FILE` or `REQUESTS_CA_BUNDLE` at Warden's CA
//! alone makes every other TLS call of the process fail, so `bundle` writes the system's roots
//! and the CA together.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;

/// How far back the CA's validity starts, for clients whose clock is a little behind.
const BACKDATE_SECS: i64 = 3600;

/// Writes a new CA certificate to `cert` and its key to `key`, valid for `days`.
pub fn new(cert: &Path, key: &Path, days: u32) -> ExitCode {
    match write_ca(cert, key, days) {
        Ok(()) => {
            println!("CA certificate: {}", cert.display());
            println!("CA key:         {} (keep it secret)", key.display());
            println!(
                "policy: server.intercept_ca_cert_file: {}, server.intercept_ca_key_file: {}",
                cert.display(),
                key.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warden: {e}");
            ExitCode::from(1)
        }
    }
}

fn write_ca(cert: &Path, key: &Path, days: u32) -> Result<(), String> {
    if days == 0 {
        return Err("--days must be at least 1".into());
    }
    let now = jiff::Timestamp::now().as_second();
    let at = |secs: i64| time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| e.to_string());
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Warden interception CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = at(now - BACKDATE_SECS)?;
    params.not_after = at(now + i64::from(days) * 86_400)?;
    let pair = KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let certificate = params
        .self_signed(&pair)
        .map_err(|e| format!("cannot sign the CA: {e}"))?;
    create(key, 0o600, pair.serialize_pem().as_bytes())?;
    create(cert, 0o644, certificate.pem().as_bytes())
}

/// Writes `bytes` to a new file (never over an existing one).
fn create(path: &Path, mode: u32, bytes: &[u8]) -> Result<(), String> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Writes the system's roots and the CA (`cert`, else the policy's) to `out` or stdout.
pub fn bundle(cert: Option<PathBuf>, config: Option<PathBuf>, out: Option<&Path>) -> ExitCode {
    match write_bundle(cert, config, out) {
        Ok(summary) => {
            eprintln!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warden: {e}");
            ExitCode::from(1)
        }
    }
}

fn write_bundle(
    cert: Option<PathBuf>,
    config: Option<PathBuf>,
    out: Option<&Path>,
) -> Result<String, String> {
    let cert = match cert {
        Some(cert) => cert,
        None => policy_ca(config)?,
    };
    let pem = std::fs::read(&cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let ca = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", cert.display()))?;
    if ca.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    }
    let roots = rustls_native_certs::load_native_certs()
        .map_err(|e| format!("cannot read the system's root certificates: {e}"))?;
    let roots: Vec<_> = roots
        .into_iter()
        .filter(|root| !ca.contains(root))
        .collect();
    if roots.is_empty() {
        return Err("found no system root certificates (install ca-certificates)".into());
    }
    let mut text = String::new();
    for der in roots.iter().chain(&ca) {
        text.push_str(&pem_block(der));
    }
    match out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write the bundle: {e}"))?,
    }
    let from = match std::env::var_os("SSL_CERT_FILE") {
        Some(file) => format!(" (read from SSL_CERT_FILE={})", Path::new(&file).display()),
        None => String::new(),
    };
    Ok(format!(
        "bundled {} system root certificates{from} and {} from {}",
        roots.len(),
        ca.len(),
        cert.display()
    ))
}

/// The CA certificate file the policy at `config` intercepts with.
fn policy_ca(config: Option<PathBuf>) -> Result<PathBuf, String> {
    let path = super::config_path(config);
    let snapshot = super::offline_snapshot(&path)?;
    snapshot
        .server
        .intercept_ca
        .map(|(cert, _)| cert)
        .ok_or_else(|| {
            format!(
                "the policy at {} has no `server.intercept_ca_cert_file`; give the CA with --cert",
                path.display()
            )
        })
}

fn pem_block(der: &CertificateDer<'_>) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut block = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        block.push_str(&String::from_utf8_lossy(line));
        block.push('\n');
    }
    block.push_str("-----END CERTIFICATE-----\n");
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_read_back_as_the_same_certificate() {
        let der = CertificateDer::from((0u8..=200).collect::<Vec<u8>>());
        let block = pem_block(&der);
        assert!(block.lines().all(|line| line.len() <= 64));
        let read: Vec<_> = rustls_pemfile::certs(&mut block.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read, vec![der]);
    }
}
