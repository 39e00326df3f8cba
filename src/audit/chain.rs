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

impl ChainState {
    /// A chain that has not written anything yet.
    pub fn new(instance: String) -> Self {
        ChainState {
            instance,
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }

    /// Links `record` (a JSON object) into the chain and returns it as one JSON line.
    pub fn seal(&mut self, mut record: Map<String, Value>) -> String {
        self.seq += 1;
        record.insert("seq".into(), Value::from(self.seq));
        record.insert("instance".into(), Value::from(self.instance.as_str()));
        record.insert("prev".into(), Value::from(self.hash.as_str()));
        self.hash = canonical_hash(&record);
        record.insert("hash".into(), Value::from(self.hash.as_str()));
        Value::Object(record).to_string()
    }

    /// Links a checkpoint: a record whose signature covers this chain up to and including it.
    pub fn checkpoint(&mut self, ts: String, key: Option<&SigningKey>) -> String {
        let mut record = Map::new();
        record.insert("type".into(), Value::from("checkpoint"));
        record.insert("ts".into(), Value::from(ts));
        let mut line_record = record.clone();
        // The signature signs the checkpoint's own hash, so it is added after hashing.
        self.seq += 1;
        for r in [&mut record, &mut line_record] {
            r.insert("seq".into(), Value::from(self.seq));
            r.insert("instance".into(), Value::from(self.instance.as_str()));
            r.insert("prev".into(), Value::from(self.hash.as_str()));
        }
        self.hash = canonical_hash(&record);
        line_record.insert("hash".into(), Value::from(self.hash.as_str()));
        if let Some(key) = key {
            let signature = key.sign(self.hash.as_bytes());
            line_record.insert(
                "signature".into(),
                Value::from(base64_encode(&signature.to_bytes())),
            );
        }
        Value::Object(line_record).to_string()
    }
}

/// SHA-256 (hex) of a record's canonical encoding, leaving out `hash` and `signature`.
pub fn canonical_hash(record: &Map<String, Value>) -> String {
    let mut out = Vec::with_capacity(512);
    let fields = record
        .iter()
        .filter(|(key, _)| *key != "hash" && *key != "signature");
    write_object(fields, &mut out);
    hex::encode(Sha256::digest(&out))
}

/// Compact JSON with every object's keys in byte order, whatever order the map keeps.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map.iter(), out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

fn write_object<'a>(fields: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut Vec<u8>) {
    let mut fields: Vec<_> = fields.collect();
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (key, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(Value::from(key.as_str()).to_string().as_bytes());
        out.push(b':');
        write_canonical(value, out);
    }
    out.push(b'}');
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("type".into(), Value::from("request"));
        m.insert("n".into(), Value::from(n));
        // Floats must survive a JSON round trip bit for bit (serde_json `float_roundtrip`).
        m.insert("latency_ms".into(), Value::from(0.1 + 0.2 + n as f64 / 7.0));
        m
    }

    #[test]
    fn records_link_to_their_predecessor() {
        let mut chain = ChainState::new("pod-a".into());
        let first: Map<String, Value> = serde_json::from_str(&chain.seal(event(1))).unwrap();
        let second: Map<String, Value> = serde_json::from_str(&chain.seal(event(2))).unwrap();
        assert_eq!(first["prev"], GENESIS);
        assert_eq!(second["prev"], first["hash"]);
        assert_eq!(second["seq"], 2);
        assert_eq!(second["hash"], canonical_hash(&second).as_str());
        let reparsed: Map<String, Value> =
            serde_json::from_str(&Value::Object(second.clone()).to_string()).unwrap();
        assert_eq!(canonical_hash(&reparsed), second["hash"].as_str().unwrap());
        let mut edited = second.clone();
        edited.insert("n".into(), Value::from(3));
        assert_ne!(canonical_hash(&edited), canonical_hash(&second));
    }
}
