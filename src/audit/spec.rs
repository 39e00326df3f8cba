//! `audit:` as written in policy files.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// `audit:` — the audit trail's sink, spool and signing key.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    #[schemars(with = "SinkSpec")]
    pub sink: Spanned<SinkSpec>,
    /// Events that cannot be shipped wait here (and survive restarts), with the chain state.
    #[schemars(with = "String")]
    pub spool_dir: Spanned<String>,
    /// Cap on the spool's size; beyond it events are dropped (counted, logged loudly).
    #[schemars(with = "Option<u64>")]
    pub spool_max_bytes: Option<Spanned<u64>>,
    /// PKCS#8 PEM Ed25519 key that signs checkpoints (`warden keygen`).
    #[schemars(with = "Option<String>")]
    pub signing_key_file: Option<Spanned<String>>,
    /// Name of this Warden's chain; default: kept in the spool directory, first made from the
    /// host name and a random suffix.
    #[schemars(with = "Option<String>")]
    pub instance: Option<Spanned<String>>,
    /// A signed checkpoint after this many events (default 1000)...
    #[schemars(with = "Option<u64>")]
    pub checkpoint_every: Option<Spanned<u64>>,
    /// ...or this many seconds after the last one, if events came since (default 10).
    #[schemars(with = "Option<f64>")]
    pub checkpoint_interval_secs: Option<Spanned<f64>>,
}

/// One sink: `{file: {...}}`, `{http: {...}}` or `{otlp: {...}}`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkSpec {
    File(FileSinkSpec),
    Http(HttpSinkSpec),
    Otlp(OtlpSinkSpec),
}

/// JSON lines appended to a file, rotated by size.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkSpec {
    pub path: String,
    /// Rotate when the file reaches this size (default 100 MiB).
    pub max_bytes: Option<u64>,
    /// Rotated files kept as `path.1` … `path.N` (default 5).
    pub keep: Option<u32>,
}

/// NDJSON batches POSTed (gzip) to a collector; any 2xx acknowledges the batch.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkSpec {
    pub url: String,
    /// Seconds to wait for the collector's answer (default 10).
    pub timeout_secs: Option<f64>,
}

/// OTLP/HTTP logs (JSON encoding) to an OpenTelemetry Collector.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpSinkSpec {
    /// Collector base URL, e.g. `http://otel-collector:4318`; logs go to `/v1/logs`.
    pub endpoint: String,
    pub timeout_secs: Option<f64>,
}
