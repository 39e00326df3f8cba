//! The on-disk spool: chained records that the sink has not acknowledged, in order, plus the
//! chain state, in one directory that survives restarts.
//!
//! Records are appended to numbered segment files (`segment-<first seq>.jsonl`) and fsync'd
//! per batch; the oldest segment is shipped first and deleted once the sink acknowledges it.
//! `chain.json` holds the last `seq`/hash given, so a restarted Warden continues its chain.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::chain::ChainState;

/// A segment is closed (and a new one started) beyond this size.
const SEGMENT_BYTES: u64 = 4 << 20;

/// The spool directory and its bookkeeping.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in all segments.
    bytes: u64,
    /// Segment being appended to, and its size.
    active: Option<(PathBuf, File, u64)>,
}

impl Spool {
    /// Opens (creating) the spool directory and measures what it holds.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            bytes: 0,
            active: None,
        };
        for segment in spool.segments()? {
            spool.bytes += fs::metadata(&segment)?.len();
        }
        Ok(spool)
    }

    /// Bytes waiting to be shipped.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Appends records (one JSON line each, without newline) and fsyncs them. Returns false,
    /// writing nothing, when they would take the spool over its size cap.
    pub fn append(&mut self, first_seq: u64, lines: &[String]) -> io::Result<bool> {
        let size: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        if self.bytes + size > self.max_bytes {
            return Ok(false);
        }
        let rotate = match &self.active {
            Some((_, _, len)) => *len >= SEGMENT_BYTES,
            None => true,
        };
        if rotate {
            let path = self.dir.join(format!("segment-{first_seq:020}.jsonl"));
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            let len = file.metadata()?.len();
            self.active = Some((path, file, len));
            File::open(&self.dir)?.sync_all()?;
        }
        let Some((_, file, len)) = &mut self.active else {
            return Ok(false);
        };
        let mut buffer = Vec::with_capacity(size as usize);
        for line in lines {
            buffer.extend_from_slice(line.as_bytes());
            buffer.push(b'\n');
        }
        file.write_all(&buffer)?;
        file.sync_data()?;
        *len += size;
        self.bytes += size;
        Ok(true)
    }

    /// The oldest segment and its records, if any. It is closed for appending first.
    pub fn oldest(&mut self) -> io::Result<Option<(PathBuf, Vec<String>)>> {
        let Some(path) = self.segments()?.into_iter().next() else {
            return Ok(None);
        };
        if self.active.as_ref().is_some_and(|(p, _, _)| *p == path) {
            self.active = None;
        }
        let lines = BufReader::new(File::open(&path)?)
            .lines()
            .filter(|l| l.as_ref().map_or(true, |l| !l.is_empty()))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Some((path, lines)))
    }

    /// Deletes a segment the sink acknowledged.
    pub fn remove(&mut self, segment: &Path) -> io::Result<()> {
        let len = fs::metadata(segment)?.len();
        fs::remove_file(segment)?;
        self.bytes = self.bytes.saturating_sub(len);
        Ok(())
    }

    /// The chain state saved last, or the last record in the spool if that is newer (the
    /// state file is written after the spool, so a crash can leave it one batch behind).
    pub fn load_chain(&self) -> io::Result<Option<ChainState>> {
        let saved: Option<ChainState> = match fs::read(self.dir.join("chain.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let spooled = match self.segments()?.last() {
            Some(last) => last_record(last)?,
            None => None,
        };
        Ok(match (saved, spooled) {
            (Some(a), Some(b)) => Some(if b.seq > a.seq { b } else { a }),
            (a, b) => a.or(b),
        })
    }

    /// Saves the chain state (write to a temporary file, then rename over the old one).
    pub fn save_chain(&self, state: &ChainState) -> io::Result<()> {
        let tmp = self.dir.join(".chain.json.tmp");
        fs::write(&tmp, serde_json::to_vec(state).map_err(io::Error::other)?)?;
        fs::rename(tmp, self.dir.join("chain.json"))
    }

    fn segments(&self) -> io::Result<Vec<PathBuf>> {
        let mut segments = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| n.starts_with("segment-") && n.ends_with(".jsonl")) {
                segments.push(path);
            }
        }
        segments.sort();
        Ok(segments)
    }
}

/// The chain position after the last complete record of a segment.
fn last_record(segment: &Path) -> io::Result<Option<ChainState>> {
    let mut last = None;
    for line in BufReader::new(File::open(segment)?).lines() {
        let line = line?;
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let (Some(instance), Some(seq), Some(hash)) = (
            record["instance"].as_str(),
            record["seq"].as_u64(),
            record["hash"].as_str(),
        ) else {
            continue;
        };
        last = Some(ChainState {
            instance: instance.to_string(),
            seq,
            hash: hash.to_string(),
        });
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_and_the_cap_holds() {
        let dir = std::env::temp_dir().join(format!("warden-spool-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut spool = Spool::open(&dir, 1000).unwrap();
        let mut chain = ChainState::new("i".into());
        let a: Vec<String> = (0..2)
            .map(|_| {
                chain.seal(|link| {
                    format!(r#"{{"instance":"{}","seq":{}}}"#, link.instance, link.seq).into_bytes()
                })
            })
            .collect();
        assert!(spool.append(1, &a).unwrap());
        let too_big = vec!["x".repeat(1000)];
        assert!(!spool.append(3, &too_big).unwrap());
        let (path, lines) = spool.oldest().unwrap().unwrap();
        assert_eq!(lines, a);
        assert_eq!(spool.load_chain().unwrap().unwrap(), chain);
        spool.remove(&path).unwrap();
        assert!(spool.is_empty() && spool.oldest().unwrap().is_none());
        let _ = fs::remove_dir_all(&dir);
    }
}
