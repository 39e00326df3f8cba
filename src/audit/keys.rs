//! Ed25519 keys as SPEC.md stores them: private keys as PKCS#8 PEM files (what `openssl genpkey
//! -algorithm ed25519` and `warden keygen` write), public keys as base64 of the raw 32 bytes.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// Reads a PKCS#8 PEM Ed25519 private key; the error never contains key material.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, String> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read signing key {}: {e}", path.display()))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|_| {
        format!(
            "{} is not a PKCS#8 PEM Ed25519 private key (`warden keygen` writes one)",
            path.display()
        )
    })
}

/// A new random key pair.
pub fn generate() -> Result<SigningKey, getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The private key as PKCS#8 v1 PEM (the private key alone, as `openssl genpkey` writes it):
/// the v2 form with the public key inside is refused by some readers (Python's `cryptography`).
pub fn signing_key_pem(key: &SigningKey) -> Result<String, String> {
    let pair = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    pair.to_pkcs8_pem(Default::default())
        .map(|pem| pem.to_string())
        .map_err(|e| format!("cannot encode the key: {e}"))
}

/// Base64 of the raw 32-byte public key (the form policy files and `--key` take).
pub fn public_key_base64(key: &VerifyingKey) -> String {
    STANDARD.encode(key.as_bytes())
}

/// Parses a base64 raw 32-byte Ed25519 public key.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| "the public key is not base64".to_string())?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "an Ed25519 public key is 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 public key".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_and_base64_round_trip() {
        let key = generate().unwrap();
        let pem = signing_key_pem(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
        let public = public_key_base64(&key.verifying_key());
        assert_eq!(parse_public_key(&public).unwrap(), key.verifying_key());
        assert!(parse_public_key("AAAA").is_err());
    }
}
