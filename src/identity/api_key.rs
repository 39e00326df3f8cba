//! API keys: stored as SHA-256 of the whole secret, looked up by that hash.
//!
//! The lookup is a hash-map probe on the SHA-256 digest followed by a constant-time comparison.
//! Timing can at most reveal something about the digest of a guess, which says nothing usable
//! about any stored secret (that would need a SHA-256 preimage).

use std::collections::HashMap;

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 of an API key secret.
pub type KeyHash = [u8; 32];

/// What a stored key stands for.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub hash: KeyHash,
    /// Index of the owning agent in the snapshot.
    pub agent: usize,
    /// The key id from policy (safe to log and audit; the secret never is).
    pub key_id: String,
    pub expires_at: Option<Timestamp>,
    /// Listed under `revocations.keys`: refused even before it expires.
    pub revoked: bool,
}

/// Why a known key is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRejection {
    Revoked,
    Expired,
}

impl KeyEntry {
    /// Whether the key may be used at `now`: revocation first, then expiry.
    pub fn check(&self, now: Timestamp) -> Result<(), KeyRejection> {
        if self.revoked {
            return Err(KeyRejection::Revoked);
        }
        match self.expires_at {
            Some(expiry) if expiry <= now => Err(KeyRejection::Expired),
            _ => Ok(()),
        }
    }
}

/// Every API key of a snapshot, indexed by hash.
#[derive(Debug, Default)]
pub struct KeyIndex {
    by_hash: HashMap<KeyHash, KeyEntry>,
}

impl KeyIndex {
    /// Adds a key; returns false if a key with the same hash is already present.
    pub fn insert(
        &mut self,
        hash: KeyHash,
        agent: usize,
        key_id: String,
        expires_at: Option<Timestamp>,
        revoked: bool,
    ) -> bool {
        if self.by_hash.contains_key(&hash) {
            return false;
        }
        let entry = KeyEntry {
            hash,
            agent,
            key_id,
            expires_at,
            revoked,
        };
        self.by_hash.insert(hash, entry);
        true
    }

    /// Finds the key for a presented secret. Whether it may be used now is [`KeyEntry::check`]:
    /// the caller learns the agent even for a revoked or expired key (for metrics and audit).
    pub fn find(&self, secret: &[u8]) -> Option<&KeyEntry> {
        let hash = hash_secret(secret);
        let entry = self.by_hash.get(&hash)?;
        bool::from(entry.hash.ct_eq(&hash)).then_some(entry)
    }

    /// The key stored under `hash` (how an audit event names the key it saw, without copying
    /// its id on the request path).
    pub fn by_hash(&self, hash: &KeyHash) -> Option<&KeyEntry> {
        self.by_hash.get(hash)
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// SHA-256 of a secret, as policy files store it.
pub fn hash_secret(secret: &[u8]) -> KeyHash {
    Sha256::digest(secret).into()
}

/// Parses a policy `sha256:` value: exactly 64 hex digits.
pub fn parse_hash(hex_digest: &str) -> Option<KeyHash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut hash).ok()?;
    Some(hash)
}

/// Makes a new random API key secret: `wdn_` and 32 random bytes in hex.
pub fn generate_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("wdn_{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_secret_and_honours_revocation_and_expiry() {
        let mut index = KeyIndex::default();
        let now: Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
        let later: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        assert!(index.insert(hash_secret(b"a"), 0, "k-a".into(), Some(later), false));
        assert!(index.insert(hash_secret(b"b"), 1, "k-b".into(), Some(now), false));
        assert!(index.insert(hash_secret(b"r"), 1, "k-r".into(), Some(now), true));
        assert!(!index.insert(hash_secret(b"a"), 2, "dup".into(), None, false));
        let a = index.find(b"a").unwrap();
        assert_eq!((a.key_id.as_str(), a.check(now)), ("k-a", Ok(())));
        assert_eq!(
            index.find(b"b").unwrap().check(now),
            Err(KeyRejection::Expired)
        );
        assert_eq!(
            index.find(b"r").unwrap().check(now),
            Err(KeyRejection::Revoked)
        );
        assert!(index.find(b"c").is_none());
    }

    #[test]
    fn parses_only_full_hex_digests() {
        let digest = hex::encode(hash_secret(b"x"));
        assert_eq!(parse_hash(&digest), Some(hash_secret(b"x")));
        assert_eq!(parse_hash(&digest[..63]), None);
        assert_eq!(parse_hash(&format!("{}zz", &digest[..62])), None);
    }

    #[test]
    fn generated_secrets_are_unique_and_prefixed() {
        let a = generate_secret().unwrap();
        assert!(a.starts_with("wdn_") && a.len() == 68);
        assert_ne!(a, generate_secret().unwrap());
    }
}
