//! Process logging: level from `WARDEN_LOG` (env_logger syntax, default `info`), format from
//! `WARDEN_LOG_FORMAT` (`text`, the default, or `json`: one object per line for log pipelines).
//!
//! Structured fields (`log`'s key-values, e.g. the request id and agent on every request line
//! from the proxy's `warden::access` target) become JSON members, or `key=value` pairs in text.
//! Nothing logged carries a secret: the proxy logs ids, never credentials.

use std::io::Write;

use env_logger::fmt::Formatter;
use log::kv::{Key, Value, VisitSource};
use log::Record;

/// The default filter: everything at info, but Pingora's per-connection connector chatter.
const DEFAULT_FILTER: &str = "info,pingora_core::connectors=warn";

/// Installs the logger once; later calls are no-ops.
pub fn init() {
    let env = env_logger::Env::default().filter_or("WARDEN_LOG", DEFAULT_FILTER);
    let mut builder = env_logger::Builder::from_env(env);
    let json = std::env::var("WARDEN_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        builder.format(write_json);
    } else {
        builder.format_target(false);
    }
    let _ = builder.try_init();
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
