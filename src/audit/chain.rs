//! The hash chain: every record names the hash of the one before it.
//!
//! A record's `hash` is the SHA-256 of its canonical encoding: the JSON object without `hash`
//! and `signature`, every object's keys in byte order, no whitespace. Editing, deleting,
//! reordering or inserting a line breaks either a hash, a `prev` link or the `seq` sequence;
//! signed checkpoints make the chain up to them unforgeable without the instance's key.

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `prev` of the first record of an instance.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where an instance's chain stands: the last `seq` given and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainState {
    pub instance: String,
    pub seq: u64,
    pub hash: String,
}

/// The chain fields of the record being sealed.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub instance: &'a str,
    pub seq: u64,
    pub prev: &'a str,
}

/// A checkpoint as written; fields in byte order (see [`ChainState::seal`]).
#[derive(Serialize)]
struct CheckpointRecord<'a> {
    instance: &'a str,
    prev: &'a str,
    seq: u64,
    ts: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl ChainState {
    /// A chain that has not written anything yet.
    pub fn new(instance: String) -> Self {
        ChainState {
            instance,
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }

    /// Links the next record into the chain and returns it as one JSON line.
    ///
    /// `serialize` writes the record for its chain position; the bytes must already be
    /// canonical (every struct's fields in byte order of their names, no `hash`), which makes
    /// hashing a single pass over them. `hash` is then appended as the last field.
    pub fn seal(&mut self, serialize: impl FnOnce(&Link<'_>) -> Vec<u8>) -> String {
        let seq = self.seq + 1;
        let link = Link {
            instance: &self.instance,
            seq,
            prev: &self.hash,
        };
        let bytes = serialize(&link);
        let mut hex = [0u8; 64];
        // A 32-byte digest always fits 64 hex digits.
        let _ = hex::encode_to_slice(Sha256::digest(&bytes), &mut hex);
        let hash = std::str::from_utf8(&hex).unwrap_or_default();
        self.seq = seq;
        let line = with_fields(bytes, &[("hash", hash)]);
        self.hash.clear();
        self.hash.push_str(hash);
        line
    }

    /// Links a checkpoint: a record whose signature (over its own hash, which covers every
    /// record before it) proves the chain up to here was written by the key's holder.
    pub fn checkpoint(&mut self, ts: String, key: Option<&SigningKey>) -> String {
        let line = self.seal(|link| {
            to_json(&CheckpointRecord {
                instance: link.instance,
                prev: link.prev,
                seq: link.seq,
                ts,
                kind: "checkpoint",
            })
        });
        match key {
            Some(key) => {
                let signature = base64_encode(&key.sign(self.hash.as_bytes()).to_bytes());
                with_fields(line.into_bytes(), &[("signature", &signature)])
            }
            None => line,
        }
    }
}

/// Serializes a record (plain data: cannot fail), with room for the chain fields appended later.
pub fn to_json<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_CAPACITY);
    if serde_json::to_writer(&mut out, record).is_err() {
        out.clear();
    }
    out
}

/// Bytes reserved for one record: a typical request record with its `hash` fits.
const RECORD_CAPACITY: usize = 768;

/// Appends string fields to a serialized JSON object.
fn with_fields(mut object: Vec<u8>, fields: &[(&str, &str)]) -> String {
    if object.last() == Some(&b'}') {
        object.pop();
    }
    for (name, value) in fields {
        object.extend_from_slice(b",\"");
        object.extend_from_slice(name.as_bytes());
        object.extend_from_slice(b"\":\"");
        object.extend_from_slice(value.as_bytes());
        object.push(b'"');
    }
    object.push(b'}');
    String::from_utf8(object).unwrap_or_default()
}

/// SHA-256 (hex) of a record's canonical encoding, leaving out `hash` and `signature`.
pub fn canonical_hash(record: &Map<String, Value>) -> String {
    let mut out = Vec::with_capacity(512);
    let fields = record
        .iter()
        .filter(|(key, _)| *key != "hash" && *key != "signature");
    crate::json::write_canonical_object(fields, &mut out);
    hex::encode(Sha256::digest(&out))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Record<'a> {
        instance: &'a str,
        latency_ms: f64,
        prev: &'a str,
        seq: u64,
    }

    fn record(n: u64) -> impl FnOnce(&Link<'_>) -> Vec<u8> {
        // Floats must survive a JSON round trip bit for bit (serde_json `float_roundtrip`).
        move |link| {
            to_json(&Record {
                instance: link.instance,
                latency_ms: 0.1 + 0.2 + n as f64 / 7.0,
                prev: link.prev,
                seq: link.seq,
            })
        }
    }

    fn parse(line: &str) -> Map<String, Value> {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn records_link_to_their_predecessor_and_hash_canonically() {
        let mut chain = ChainState::new("pod-a".into());
        let first = parse(&chain.seal(record(1)));
        let second = parse(&chain.seal(record(2)));
        assert_eq!(first["prev"], GENESIS);
        assert_eq!(second["prev"], first["hash"]);
        assert_eq!(second["seq"], 2);
        assert_eq!(canonical_hash(&second), second["hash"].as_str().unwrap());
        let mut edited = second.clone();
        edited.insert("latency_ms".into(), Value::from(3.0));
        assert_ne!(canonical_hash(&edited), canonical_hash(&second));
    }

    #[test]
    fn checkpoints_are_signed_over_their_hash() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut chain = ChainState::new("pod-a".into());
        chain.seal(record(1));
        let checkpoint = parse(&chain.checkpoint("2026-11-24T00:00:00Z".into(), Some(&key)));
        let hash = checkpoint["hash"].as_str().unwrap();
        assert_eq!(canonical_hash(&checkpoint), hash);
        use base64::Engine;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(checkpoint["signature"].as_str().unwrap())
            .unwrap();
        let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
        use ed25519_dalek::Verifier;
        assert!(key
            .verifying_key()
            .verify(hash.as_bytes(), &signature)
            .is_ok());
    }
}
