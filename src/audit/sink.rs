//! Where chained audit records go: a file, an HTTP collector, or an OpenTelemetry Collector.
//!
//! A sink takes a batch of records (JSON lines) and either acknowledges all of them or fails;
//! the shipper spools what fails and retries later, so a sink never retries by itself.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Map, Value};

use super::spec::SinkSpec;

/// Receives batches of records.
pub trait Sink: Send {
    /// Delivers every record or fails; the error says why, without secrets.
    fn send(&mut self, records: &[String]) -> Result<(), String>;
}

/// Builds the sink `spec` describes; `instance` names the chain (OTLP resource attribute).
pub fn build(spec: &SinkSpec, instance: &str) -> Box<dyn Sink> {
    match spec {
        SinkSpec::File(file) => Box::new(FileSink {
            path: PathBuf::from(&file.path),
            max_bytes: file.max_bytes.unwrap_or(100 << 20),
            keep: file.keep.unwrap_or(5),
            file: None,
        }),
        SinkSpec::Http(http) => Box::new(HttpSink {
            agent: agent(http.timeout_secs),
            url: http.url.clone(),
        }),
        SinkSpec::Otlp(otlp) => Box::new(OtlpSink {
            agent: agent(otlp.timeout_secs),
            url: format!("{}/v1/logs", otlp.endpoint.trim_end_matches('/')),
            instance: instance.to_string(),
        }),
    }
}

fn agent(timeout_secs: Option<f64>) -> ureq::Agent {
    let timeout = Duration::try_from_secs_f64(timeout_secs.unwrap_or(10.0))
        .unwrap_or(Duration::from_secs(10));
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// JSON lines appended to a file, fsync'd per batch, rotated to `path.1` … `path.N` by size.
struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<(File, u64)>,
}

impl FileSink {
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            return fs::remove_file(&self.path);
        }
        for n in (1..self.keep).rev() {
            if numbered(n).exists() {
                fs::rename(numbered(n), numbered(n + 1))?;
            }
        }
        fs::rename(&self.path, numbered(1))
    }

    fn write(&mut self, records: &[String]) -> std::io::Result<()> {
        if self
            .file
            .as_ref()
            .is_some_and(|(_, len)| *len >= self.max_bytes)
        {
            self.rotate()?;
        }
        if self.file.is_none() {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let len = file.metadata()?.len();
            self.file = Some((file, len));
        }
        let Some((file, len)) = &mut self.file else {
            return Ok(());
        };
        let mut buffer = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
        for record in records {
            buffer.extend_from_slice(record.as_bytes());
            buffer.push(b'\n');
        }
        file.write_all(&buffer)?;
        file.sync_data()?;
        *len += buffer.len() as u64;
        Ok(())
    }
}

impl Sink for FileSink {
    fn send(&mut self, records: &[String]) -> Result<(), String> {
        self.write(records).map_err(|e| {
            self.file = None;
            format!("cannot write {}: {e}", self.path.display())
        })
    }
}

/// NDJSON batches, gzip-compressed, POSTed to a collector; any 2xx acknowledges the batch.
struct HttpSink {
    agent: ureq::Agent,
    url: String,
}

impl Sink for HttpSink {
    fn send(&mut self, records: &[String]) -> Result<(), String> {
        let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
        for record in records {
            gzip.write_all(record.as_bytes())
                .and_then(|()| gzip.write_all(b"\n"))
                .map_err(|e| format!("cannot compress: {e}"))?;
        }
        let body = gzip.finish().map_err(|e| format!("cannot compress: {e}"))?;
        post(
            &self.agent,
            &self.url,
            "application/x-ndjson",
            Some("gzip"),
            &body,
        )
    }
}

/// OTLP/HTTP logs in the JSON encoding: one log record per audit record, its JSON as the body
/// and its fields as attributes.
struct OtlpSink {
    agent: ureq::Agent,
    url: String,
    instance: String,
}

impl Sink for OtlpSink {
    fn send(&mut self, records: &[String]) -> Result<(), String> {
        let observed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_string();
        let logs: Vec<Value> = records
            .iter()
            .map(|record| otlp_log_record(record, &observed))
            .collect();
        let request = json!({
            "resourceLogs": [{
                "resource": {"attributes": [
                    attribute("service.name", &Value::from("warden")),
                    attribute("service.instance.id", &Value::from(self.instance.as_str())),
                ]},
                "scopeLogs": [{"scope": {"name": "warden.audit"}, "logRecords": logs}],
            }]
        });
        post(
            &self.agent,
            &self.url,
            "application/json",
            None,
            request.to_string().as_bytes(),
        )
    }
}

fn otlp_log_record(record: &str, observed: &str) -> Value {
    let fields: Map<String, Value> = serde_json::from_str(record).unwrap_or_default();
    let time = fields
        .get("ts")
        .and_then(Value::as_str)
        .and_then(|ts| ts.parse::<jiff::Timestamp>().ok())
        .map_or_else(|| observed.to_string(), |t| t.as_nanosecond().to_string());
    let mut attributes = Vec::new();
    flatten("warden", &fields, &mut attributes);
    json!({
        "timeUnixNano": time,
        "observedTimeUnixNano": observed,
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": record},
        "attributes": attributes,
    })
}

/// Object fields as OTLP attributes named `prefix.field` (nested objects flattened).
fn flatten(prefix: &str, fields: &Map<String, Value>, out: &mut Vec<Value>) {
    for (key, value) in fields {
        let name = format!("{prefix}.{key}");
        match value {
            Value::Object(inner) => flatten(&name, inner, out),
            Value::Null => {}
            _ => out.push(attribute(&name, value)),
        }
    }
}

fn attribute(key: &str, value: &Value) -> Value {
    let any = match value {
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_u64() || n.is_i64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n.as_f64()}),
        Value::String(s) => json!({"stringValue": s}),
        other => json!({"stringValue": other.to_string()}),
    };
    json!({"key": key, "value": any})
}

fn post(
    agent: &ureq::Agent,
    url: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: &[u8],
) -> Result<(), String> {
    let mut request = agent.post(url).header("content-type", content_type);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    match request.send(body) {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("{url} answered {}", response.status())),
        Err(e) => Err(format!("cannot reach {url}: {e}")),
    }
}
