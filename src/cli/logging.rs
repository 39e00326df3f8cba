//! Process logging: level from `WARDEN_LOG` (env_logger syntax, default `info`), format from
//! `WARDEN_LOG_FORMAT` (`text`, the default, or `json`: one object per line for log pipelines).
//!
//! Structured fields (`log`'s key-values, e.g. the request id and agent on every request line
//! from the proxy's `warden::access` target) become JSON members, or `key=value` pairs in text.
//! Nothing logged carries a secret: the proxy logs ids, never credentials, and libraries log
//! at most at `info` (their debug lines carry request headers and bodies).
//!
//! Request lines never wait on the output: they go through a bounded queue to a writer thread
//! that writes them in batches every 20 ms. A `write`, or a wake-up of the writer, per request
//! line measured at ~30 µs of CPU per request; batched, the line costs ~8 µs. When the writer
//! falls behind, lines are dropped and the count is reported. Other lines (start-up, reloads,
//! errors) are rare and are written directly, so none is lost when the process exits.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

use env_logger::fmt::Formatter;
use log::kv::{Key, Value, VisitSource};
use log::{Log, Metadata, Record};

use crate::proxy::ACCESS_LOG_TARGET;

/// Request lines waiting for the writer thread.
const QUEUE_LINES: usize = 16_384;

/// The default filter: everything at info, but Pingora's per-connection connector chatter.
const DEFAULT_FILTER: &str = "info,pingora_core::connectors=warn";

/// Installs the logger once; later calls are no-ops.
pub fn init() {
    let json = std::env::var("WARDEN_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let direct = builder(json).build();
    let (lines, queued) = sync_channel(QUEUE_LINES);
    let queued_logger = builder(json)
        .write_style(env_logger::WriteStyle::Never)
        .target(env_logger::Target::Pipe(Box::new(QueuedLines(lines))))
        .build();
    let max_level = direct.filter();
    let split = Split {
        direct,
        queued: queued_logger,
    };
    if log::set_boxed_logger(Box::new(split)).is_ok() {
        log::set_max_level(max_level);
        let spawned = std::thread::Builder::new()
            .name("warden-log".into())
            .spawn(move || write_batches(queued));
        if let Err(e) = spawned {
            eprintln!("warden: cannot start the log writer ({e}): request lines are dropped");
        }
    }
}

fn builder(json: bool) -> env_logger::Builder {
    let env = env_logger::Env::default().filter_or("WARDEN_LOG", DEFAULT_FILTER);
    let mut builder = env_logger::Builder::from_env(env);
    if json {
        builder.format(write_json);
    } else {
        builder.format_target(false);
    }
    builder
}

/// Sends request lines to the queue and everything else straight to stderr.
struct Split {
    direct: env_logger::Logger,
    queued: env_logger::Logger,
}

/// Whether a line may be written at all: below `info`, only Warden's own targets. Libraries'
/// debug and trace lines (Pingora's print whole request headers and bodies, agent keys
/// included) never are, whatever `WARDEN_LOG` says.
fn may_log(metadata: &Metadata<'_>) -> bool {
    metadata.level() <= log::Level::Info || is_wardens(metadata.target())
}

fn is_wardens(target: &str) -> bool {
    target == "warden" || target.starts_with("warden::")
}

impl Log for Split {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        may_log(metadata) && self.direct.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !may_log(record.metadata()) {
            return;
        }
        if record.target() == ACCESS_LOG_TARGET {
            self.queued.log(record);
        } else {
            self.direct.log(record);
        }
    }

    fn flush(&self) {
        self.direct.flush();
    }
}

/// Lines dropped because the writer thread was behind, reported by it when it catches up.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The queue's sending end, as the output of env_logger's formatter (one `write` per line).
struct QueuedLines(SyncSender<Vec<u8>>);

impl Write for QueuedLines {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        match self.0.try_send(line.to_vec()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How often the writer thread wakes to write what is queued. It polls rather than waits on
/// the queue: a blocked receiver is woken by every send, a context switch per request line.
const WRITE_INTERVAL: Duration = Duration::from_millis(20);

/// The writer thread: every [`WRITE_INTERVAL`], writes every line waiting with one buffered
/// write and flushes. Ends when the logger (the sending side) is gone.
fn write_batches(lines: Receiver<Vec<u8>>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    loop {
        loop {
            match lines.try_recv() {
                Ok(line) => {
                    let _ = out.write_all(&line);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "warden: {dropped} request log lines dropped (the log output was too slow)"
            );
        }
        let _ = out.flush();
        std::thread::sleep(WRITE_INTERVAL);
    }
}

/// `{"ts":…,"level":…,"target":…,"message":…, <key-values>}` on one line.
fn write_json(buf: &mut Formatter, record: &Record<'_>) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(b"{\"ts\":\"");
    write!(line, "{}", buf.timestamp_micros())?;
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(record.level().as_str().as_bytes());
    line.extend_from_slice(b"\",\"target\":");
    push_json_string(&mut line, record.target());
    line.extend_from_slice(b",\"message\":");
    push_json_string(&mut line, &record.args().to_string());
    let mut fields = JsonFields(&mut line);
    // A visitor that never fails: the source's error, if any, has nothing to report.
    let _ = record.key_values().visit(&mut fields);
    line.extend_from_slice(b"}\n");
    buf.write_all(&line)
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Writes each key-value as a JSON member: numbers and booleans as such, the rest as strings.
struct JsonFields<'a>(&'a mut Vec<u8>);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let out = &mut *self.0;
        out.push(b',');
        push_json_string(out, key.as_str());
        out.push(b':');
        if let Some(n) = value.to_u64() {
            let _ = write!(out, "{n}");
        } else if let Some(n) = value.to_i64() {
            let _ = write!(out, "{n}");
        } else if let Some(n) = value.to_f64().filter(|n| n.is_finite()) {
            let _ = write!(out, "{n}");
        } else if let Some(b) = value.to_bool() {
            let _ = write!(out, "{b}");
        } else {
            push_json_string(out, &value.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_info_only_wardens_own_lines_are_written() {
        let at = |level, target| may_log(&Metadata::builder().level(level).target(target).build());
        assert!(at(log::Level::Debug, "warden::config"));
        assert!(at(log::Level::Info, "pingora_core::server"));
        assert!(!at(log::Level::Debug, "pingora_proxy::proxy_h1"));
        assert!(!at(log::Level::Trace, "h2::codec"));
        assert!(!at(log::Level::Debug, "wardenx"));
    }
}
