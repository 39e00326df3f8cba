//! `warden audit verify`: checks a written audit log — hashes, `prev` links, `seq` continuity,
//! checkpoint signatures — and names the first record that is wrong.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{Map, Value};

use super::chain::{canonical_hash, GENESIS};

/// What an intact log contains.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub instance: String,
    pub records: u64,
    pub checkpoints: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Records after the last signed checkpoint (not yet covered by a signature).
    pub unsigned_tail: u64,
}

/// The first bad record: where it is and what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub file: PathBuf,
    pub line: u64,
    pub seq: Option<u64>,
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if let Some(seq) = self.seq {
            write!(f, "seq {seq}: ")?;
        }
        f.write_str(&self.reason)
    }
}

/// Verifies `files`, in the order given, as one chain. With `key`, every checkpoint must carry
/// a valid signature by it.
pub fn verify(files: &[PathBuf], key: Option<&VerifyingKey>) -> Result<Report, Failure> {
    let mut report = Report::default();
    let mut previous: Option<(u64, String)> = None;
    for path in files {
        let reader = File::open(path).map(BufReader::new).map_err(|e| Failure {
            file: path.clone(),
            line: 0,
            seq: None,
            reason: format!("cannot read: {e}"),
        })?;
        for (index, line) in reader.lines().enumerate() {
            let at = |seq: Option<u64>, reason: String| Failure {
                file: path.clone(),
                line: index as u64 + 1,
                seq,
                reason,
            };
            let line = line.map_err(|e| at(None, format!("cannot read: {e}")))?;
            if line.is_empty() {
                continue;
            }
            let record = parse_strict(&line).map_err(|e| at(None, e))?;
            let seq = record.get("seq").and_then(Value::as_u64);
            check_record(&record, &mut previous, &mut report, key)
                .map_err(|reason| at(seq, reason))?;
        }
    }
    if report.records == 0 {
        return Err(Failure {
            file: files.first().cloned().unwrap_or_default(),
            line: 0,
            seq: None,
            reason: "no audit records".into(),
        });
    }
    Ok(report)
}

/// One record as a JSON object, refusing a key that appears twice in any object: readers
/// disagree on which of the two counts (most keep the first, `serde_json` the last), so a
/// record with duplicates could show a reader one value and the hash another.
pub fn parse_strict(line: &str) -> Result<Map<String, Value>, String> {
    let value =
        crate::json::strict(line.as_bytes()).map_err(|e| match e.contains("duplicate key") {
            true => format!("not a JSON object: {e} (tampering: readers disagree on its value)"),
            false => format!("not a JSON object: {e}"),
        })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("not a JSON object".into()),
    }
}

fn check_record(
    record: &Map<String, Value>,
    previous: &mut Option<(u64, String)>,
    report: &mut Report,
    key: Option<&VerifyingKey>,
) -> Result<(), String> {
    let field = |name: &str| record.get(name).and_then(Value::as_str);
    let (Some(seq), Some(hash), Some(prev), Some(instance)) = (
        record.get("seq").and_then(Value::as_u64),
        field("hash"),
        field("prev"),
        field("instance"),
    ) else {
        return Err("missing seq, hash, prev or instance".into());
    };
    if canonical_hash(record) != hash {
        return Err("hash does not match the record (edited)".into());
    }
    match previous {
        Some((last_seq, last_hash)) => {
            if instance != report.instance {
                return Err(format!(
                    "instance `{instance}` in a chain of `{}`",
                    report.instance
                ));
            }
            if seq != *last_seq + 1 {
                return Err(format!(
                    "expected seq {} (records missing or out of order)",
                    *last_seq + 1
                ));
            }
            if prev != last_hash {
                return Err("prev does not match the previous record's hash".into());
            }
        }
        None => {
            if seq == 1 && prev != GENESIS {
                return Err("the first record of a chain must have the genesis prev".into());
            }
            report.instance = instance.to_string();
            report.first_seq = seq;
        }
    }
    if field("type") == Some("checkpoint") {
        if let Some(key) = key {
            let signature = field("signature")
                .ok_or("checkpoint is not signed")?
                .as_bytes();
            let bytes: [u8; 64] = STANDARD
                .decode(signature)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or("checkpoint signature is not 64 bytes of base64")?;
            key.verify(hash.as_bytes(), &Signature::from_bytes(&bytes))
                .map_err(|_| "checkpoint signature does not verify with this key")?;
        }
        report.checkpoints += 1;
        report.unsigned_tail = 0;
    } else {
        report.unsigned_tail += 1;
    }
    report.records += 1;
    report.last_seq = seq;
    *previous = Some((seq, hash.to_string()));
    Ok(())
}

/// Files as given; a directory stands for its `*.jsonl*` files, oldest rotation first.
pub fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| is_log(p))
                .collect();
            found.sort_by_key(|p| std::cmp::Reverse(rotation(p)));
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files
}

fn is_log(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().contains(".jsonl"))
}

/// `audit.jsonl.3` → 3, `audit.jsonl` → 0.
fn rotation(path: &Path) -> u32 {
    path.extension()
        .and_then(|e| e.to_str())
        .and_then(|e| e.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_twice_in_any_object_is_refused() {
        assert!(parse_strict(r#"{"a":1,"b":[{"c":2}]}"#).is_ok());
        let top = parse_strict(r#"{"agent":"a","agent":"b"}"#).unwrap_err();
        assert!(top.contains("duplicate key `agent`"), "{top}");
        assert!(parse_strict(r#"{"tokens":{"input":1,"input":2}}"#).is_err());
        assert!(parse_strict(r#"{"a":[{"x":1,"x":1}]}"#).is_err());
        assert!(parse_strict(r#"[1]"#).is_err());
        assert!(parse_strict(r#"{"a":1} x"#).is_err());
    }
}
