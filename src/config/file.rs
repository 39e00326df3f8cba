//! The policy file format: exactly what users write, nothing compiled.
//!
//! Every struct denies unknown fields, so a typo (`request_per_minute`) is an error instead of a
//! silently missing limit. Values whose position matters for a later semantic error are wrapped
//! in [`Spanned`] so `warden check` can name the line and column.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// One policy file (or one file of a config directory) as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub server: Option<Spanned<ServerSpec>>,
    /// Insertion order matters: the first provider whose globs match a model wins.
    #[serde(default)]
    pub providers: IndexMap<Spanned<String>, ProviderSpec>,
    #[serde(default)]
    pub agents: IndexMap<Spanned<String>, AgentSpec>,
    /// May appear in several files (e.g. a `revocations.yaml` of its own); the lists are merged.
    #[serde(default)]
    pub revocations: Option<RevocationsSpec>,
    /// Where audit events go; one file of a directory may define it.
    #[serde(default)]
    pub audit: Option<Spanned<AuditSpec>>,
}

/// `audit:` — the audit trail's sink, spool and signing key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    pub sink: Spanned<SinkSpec>,
    /// Events that cannot be shipped wait here (and survive restarts), with the chain state.
    pub spool_dir: Spanned<String>,
    /// Cap on the spool's size; beyond it events are dropped (counted, logged loudly).
    pub spool_max_bytes: Option<Spanned<u64>>,
    /// PKCS#8 PEM Ed25519 key that signs checkpoints (`warden keygen`).
    pub signing_key_file: Option<Spanned<String>>,
    /// Name of this Warden's chain; default: kept in the spool directory, first made from the
    /// host name and a random suffix.
    pub instance: Option<Spanned<String>>,
    /// A signed checkpoint after this many events (default 1000)...
    pub checkpoint_every: Option<Spanned<u64>>,
    /// ...or this many seconds after the last one, if events came since (default 10).
    pub checkpoint_interval_secs: Option<Spanned<f64>>,
}

/// One sink: `{file: {...}}`, `{http: {...}}` or `{otlp: {...}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkSpec {
    File(FileSinkSpec),
    Http(HttpSinkSpec),
    Otlp(OtlpSinkSpec),
}

/// JSON lines appended to a file, rotated by size.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkSpec {
    pub path: String,
    /// Rotate when the file reaches this size (default 100 MiB).
    pub max_bytes: Option<u64>,
    /// Rotated files kept as `path.1` … `path.N` (default 5).
    pub keep: Option<u32>,
}

/// NDJSON batches POSTed (gzip) to a collector; any 2xx acknowledges the batch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkSpec {
    pub url: String,
    /// Seconds to wait for the collector's answer (default 10).
    pub timeout_secs: Option<f64>,
}

/// OTLP/HTTP logs (JSON encoding) to an OpenTelemetry Collector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSinkSpec {
    /// Collector base URL, e.g. `http://otel-collector:4318`; logs go to `/v1/logs`.
    pub endpoint: String,
    pub timeout_secs: Option<f64>,
}

/// `server:` — listening addresses and request limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub listen: Option<Spanned<String>>,
    pub admin: Option<Spanned<String>>,
    pub max_body_bytes: Option<Spanned<u64>>,
    /// Seconds to wait for a TCP/TLS connection to a provider.
    pub connect_timeout_secs: Option<Spanned<f64>>,
    /// Seconds to wait between two reads from a provider (not the total: streams can run long).
    pub read_timeout_secs: Option<Spanned<f64>>,
    /// Seconds between two background lookups of the providers' host names (default 30).
    pub resolve_interval_secs: Option<Spanned<f64>>,
}

/// `providers.<name>:` — where models are served and how Warden authenticates there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    #[serde(default)]
    pub kind: Option<Spanned<ProviderKindSpec>>,
    pub base_url: Option<Spanned<String>>,
    pub models: Vec<Spanned<String>>,
    pub api_key_env: Option<Spanned<String>>,
    pub api_key_file: Option<Spanned<String>>,
    pub auth: Option<Spanned<AuthSpec>>,
    /// PEM file of CA certificates trusted for this provider, on top of the platform's roots
    /// (a private gateway's CA).
    pub ca_file: Option<Spanned<String>>,
}

/// `kind:` of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKindSpec {
    /// A real HTTP(S) provider reached at `base_url` (the default).
    Http,
    /// Warden's built-in mock provider (no network, no key).
    Mock,
}

/// How the provider key is presented upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthSpec {
    Bearer,
    XApiKey,
    None,
}

/// `agents.<id>:` — one agent's identity and what it may do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub owner: Option<String>,
    #[serde(default)]
    pub keys: Vec<Spanned<KeySpec>>,
    pub models: Vec<Spanned<String>>,
    pub endpoints: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default)]
    pub status: Option<Spanned<StatusSpec>>,
    /// With `status: suspended`: when the agent becomes active again by itself (RFC 3339).
    pub suspended_until: Option<Spanned<String>>,
}

/// One API key, stored only as the SHA-256 of the whole secret.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub id: Spanned<String>,
    pub sha256: Spanned<String>,
    pub expires_at: Option<Spanned<String>>,
}

/// `limits:` — every limit is optional; absent means unlimited.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub requests_per_minute: Option<Spanned<u32>>,
    pub max_concurrent: Option<Spanned<u32>>,
}

/// `status:` of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusSpec {
    Active,
    Suspended,
}

/// `revocations:` — what must stop working now, whatever the rest of the policy says.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationsSpec {
    /// Agent ids: every credential of the agent is refused.
    #[serde(default)]
    pub agents: Vec<Spanned<RevokedSpec>>,
    /// API key ids or public key ids: that one credential is refused.
    #[serde(default)]
    pub keys: Vec<Spanned<RevokedSpec>>,
    /// Token ids (JWT `jti`).
    #[serde(default)]
    pub tokens: Vec<Spanned<RevokedSpec>>,
}

/// One revoked id: a bare id, or `{id, reason}`.
#[derive(Debug)]
pub enum RevokedSpec {
    Id(String),
    Entry(RevokedEntrySpec),
}

/// `{id, reason}` form of a revocation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedEntrySpec {
    pub id: String,
    pub reason: Option<String>,
}

impl RevokedSpec {
    /// The revoked id.
    pub fn id(&self) -> &str {
        match self {
            RevokedSpec::Id(id) => id,
            RevokedSpec::Entry(entry) => &entry.id,
        }
    }

    /// Why it was revoked, if the policy says.
    pub fn reason(&self) -> Option<&str> {
        match self {
            RevokedSpec::Id(_) => None,
            RevokedSpec::Entry(entry) => entry.reason.as_deref(),
        }
    }
}

/// Hand-written rather than `#[serde(untagged)]`, whose only error is "did not match any
/// variant": a mapping with a typo should say which field is unknown.
impl<'de> Deserialize<'de> for RevokedSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RevokedSpec;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an id, or a mapping {id, reason}")
            }

            fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<RevokedSpec, E> {
                Ok(RevokedSpec::Id(id.to_string()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RevokedSpec, A::Error> {
                let entry = RevokedEntrySpec::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(RevokedSpec::Entry(entry))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}
