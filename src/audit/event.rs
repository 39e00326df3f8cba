//! One audit event: what the hot path knows about a decision, owned, ready to queue.
//!
//! The proxy fills it in its `logging` phase and hands it over with a non-blocking send; the
//! shipper adds the chain fields (`seq`, `instance`, `prev`, `hash`) and writes it out. Nothing
//! secret is ever put in it: the credential is its kind and key id.

use serde::Serialize;
use serde_json::{json, Value};

/// An event as the proxy produces it (before chaining).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditEvent {
    /// RFC 3339 time the request arrived.
    pub ts: String,
    pub request_id: String,
    /// Agent id; empty when the request was not identified.
    pub agent: String,
    pub credential: Credential,
    pub method: String,
    pub path: String,
    pub model: String,
    pub provider: String,
    /// `allow` (forwarded to the provider or answered by Warden) or `deny` (refused by Warden).
    pub decision: &'static str,
    /// The SPEC error code, or `ok` / `upstream_4xx` / `upstream_5xx` / `client_closed`.
    pub code: &'static str,
    /// HTTP status sent to the client (0 when nothing was sent).
    pub status: u16,
    pub latency_ms: f64,
    /// From forwarding the request to the provider's response end.
    pub upstream_ms: Option<f64>,
    /// From the request's arrival to the provider's response header.
    pub ttfb_ms: Option<f64>,
    pub tokens: Option<Tokens>,
    /// Not priced yet (pricing comes with budgets).
    pub cost_usd: Option<f64>,
    pub config_version: String,
}

/// How the agent identified itself: the kind and key id, never the secret.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Credential {
    /// `api_key`, or `none` when no credential was presented or recognised.
    pub kind: &'static str,
    pub key_id: Option<String>,
}

/// LLM tokens the provider reported.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

impl AuditEvent {
    /// The event as a JSON object with `type: "request"`, before chaining.
    pub fn to_value(&self) -> Value {
        let mut value = json!(self);
        if let Value::Object(map) = &mut value {
            map.insert("type".into(), Value::from("request"));
        }
        value
    }
}
