//! One audit event: what the hot path knows about a decision, handed over as cheaply as
//! possible, and the record the shipper writes from it.
//!
//! The proxy fills an [`AuditEvent`] in its `logging` phase: mostly copies and reference-count
//! bumps (names stay in the snapshot it holds, the time stays a number), so emitting costs the
//! request well under a microsecond. The shipper turns it into a [`RequestRecord`], adding the
//! chain fields. Nothing secret is ever put in either: the credential is its kind and key id.

use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Method};
use jiff::Timestamp;
use serde::Serialize;

use super::chain::Link;
use crate::code::Code;
use crate::identity::Credential as Presented;

/// The names an event refers to by index: the policy snapshot the decision was made under.
///
/// The event keeps the snapshot alive instead of copying names out of it on the request path;
/// the shipper asks it for the names when it writes the record.
pub trait Directory: Send + Sync + fmt::Debug {
    /// The policy version (`config_version`).
    fn version(&self) -> &str;
    fn agent_id(&self, agent: usize) -> Option<&str>;
    fn provider_name(&self, provider: usize) -> Option<&str>;
    /// The id of the key behind `credential`: the API key's or public key's id, or the
    /// token issuer's name.
    fn credential_id(&self, credential: &Presented) -> Option<&str>;
}

/// An event as the proxy produces it (before chaining).
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub arrived: Timestamp,
    pub request_id: Option<HeaderValue>,
    /// The client's own `X-Request-ID`, when it sent a well-formed one.
    pub client_request_id: Option<HeaderValue>,
    /// The provider's own request id (its `x-request-id`), for support cases with it.
    pub provider_request_id: Option<HeaderValue>,
    /// The policy the decision was made under; agent and provider are indexes into it.
    pub snapshot: Option<Arc<dyn Directory>>,
    pub agent: Option<usize>,
    pub provider: Option<usize>,
    /// The credential the agent was identified by (never the secret); `None` when none was
    /// presented or recognised. The shipper looks its id up.
    pub credential: Option<Presented>,
    pub method: Method,
    pub path: String,
    /// The model, when it is bounded (see the metrics' `model` label).
    pub model: Option<String>,
    /// Warden refused the request itself.
    pub denied: bool,
    /// How the request ended (a SPEC error code, `ok`, `upstream_4xx`, …).
    pub code: Code,
    /// HTTP status sent to the client (0 when nothing was sent).
    pub status: u16,
    pub latency_ms: f64,
    /// From forwarding the request to the provider's response end.
    pub upstream_ms: Option<f64>,
    /// From the request's arrival to the provider's response header.
    pub ttfb_ms: Option<f64>,
    pub tokens: Option<Tokens>,
    /// Whether `tokens` is the provider's report or Warden's estimate.
    pub tokens_source: Option<TokensSource>,
    /// What the tokens cost by the policy's `pricing` (none without a price).
    pub cost_usd: Option<f64>,
    /// For a CONNECT (HTTPS_PROXY mode): the tunnel's destination and traffic.
    pub tunnel: Option<Tunnel>,
    /// For `POST /v1/verify`: the action and the verdict.
    pub action: Option<Action>,
    /// For a request refused as revoked or suspended: which list said so, and why.
    pub revocation: Option<Revocation>,
    /// For an MCP request (`/mcp/<server>`): the method, the tool called and how.
    pub mcp: Option<Mcp>,
    /// The end user the request was made for (`user`, `metadata.user_id`, `X-Warden-User`).
    pub user: Option<String>,
    /// For a model call translated to its provider's API: which way
    /// (`chat_to_messages`, `messages_to_chat`).
    pub translation: Option<&'static str>,
    /// The request's trace and span ids (`tracing:`), linking its trace to this record.
    pub trace: Option<([u8; 16], [u8; 8])>,
}

/// An MCP request's facts. The arguments of a tool call are recorded only as a digest: they
/// may hold personal data or secrets, and the digest still proves which call was made.
#[derive(Debug, Clone, Default)]
pub struct Mcp {
    /// The JSON-RPC method (`tools/call`, `tools/list`, …); `None` for a response, a GET
    /// stream or a DELETE.
    pub method: Option<String>,
    pub tool: Option<String>,
    /// SHA-256 (hex) of the call's `arguments` in canonical JSON (keys sorted, no spaces).
    pub arguments_sha256: Option<String>,
    /// The server's `isError` on the tool's result.
    pub is_error: Option<bool>,
}

/// [`Mcp`] as written (fields in byte order of their names).
#[derive(Debug, Serialize)]
pub struct McpRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    pub server: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<&'a str>,
}

/// The revocation (or suspension) that refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// `policy` (the GitOps `revocations:` or `status:`) or `fleet` (`warden revoke` or
    /// `warden suspend`, pushed through Redis).
    pub source: &'static str,
    pub reason: String,
}

/// A revocation as written (fields in byte order of their names).
#[derive(Debug, Serialize)]
pub struct RevocationRecord<'a> {
    pub reason: &'a str,
    pub source: &'static str,
}

/// A verified (or refused) action (`POST /v1/verify`).
#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    pub target: Option<String>,
    /// The amount in USD (converted from its currency).
    pub amount_usd: Option<f64>,
    pub verified: bool,
    /// Why it was refused, in check order.
    pub errors: Vec<Code>,
}

/// A CONNECT tunnel's facts (refused ones carry zero bytes and no end).
#[derive(Debug, Clone)]
pub struct Tunnel {
    /// `host:port`.
    pub destination: String,
    /// Bytes from the agent to the destination.
    pub bytes_up: u64,
    /// Bytes from the destination to the agent.
    pub bytes_down: u64,
    /// How an open tunnel ended (`closed`, `broken`, `idle_timeout`, `max_duration`); `None`
    /// when it was refused.
    pub end: Option<&'static str>,
}

/// Where an event's token counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokensSource {
    /// The provider's usage report.
    Reported,
    /// Estimated from what was streamed: the stream ended before its report.
    Estimated,
}

/// LLM tokens the provider reported (fields in byte order of their names).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tokens {
    /// Of `input`, those read from the provider's prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached: Option<u64>,
    pub input: u64,
    pub output: u64,
}

/// How the agent identified itself, as written.
#[derive(Debug, Serialize)]
pub struct Credential<'a> {
    /// A delegated token's actor chain, from the first delegate to the one acting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actors: Option<Vec<&'a str>>,
    pub key_id: Option<&'a str>,
    /// `api_key`, `jwt`, `http_signature`, or `none` when no credential was presented or
    /// recognised.
    pub kind: &'static str,
    /// A token's `jti` (JWT credentials only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<&'a str>,
}

/// A request event as written (SPEC "Audit events").
///
/// **Fields are in byte order of their names** (and so are the nested structs'): serialized
/// as is, the record is already in the chain's canonical form, so the shipper hashes it
/// without building a JSON map.
#[derive(Debug, Serialize)]
pub struct RequestRecord<'a> {
    /// An action's name (action records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'a str>,
    pub agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_down: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_up: Option<u64>,
    /// The id the client sent as `X-Request-ID` (Warden's own is `request_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<&'a str>,
    pub code: &'static str,
    pub config_version: &'a str,
    /// The tokens' cost by `pricing`; null when the model has no price or no tokens were billed.
    pub cost_usd: Option<f64>,
    pub credential: Credential<'a>,
    /// `allow` (forwarded, or answered by Warden) or `deny` (refused by Warden).
    pub decision: &'static str,
    /// A tunnel's `host:port` (tunnel records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<&'a str>,
    /// An action's refusal codes (action records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<&'static str>>,
    pub instance: &'a str,
    pub latency_ms: f64,
    /// An MCP request's method, tool and outcome (MCP records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpRecord<'a>>,
    pub method: &'a str,
    pub model: &'a str,
    pub path: &'a str,
    pub prev: &'a str,
    pub provider: &'a str,
    pub provider_request_id: Option<&'a str>,
    pub request_id: &'a str,
    /// Which list revoked or suspended a refused request's agent or credential, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationRecord<'a>>,
    pub seq: u64,
    /// The request's span in its trace (`tracing:`), 16 hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<Hex<'a>>,
    pub status: u16,
    /// An action's target (action records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
    pub tokens: Option<Tokens>,
    pub tokens_source: Option<TokensSource>,
    /// The request's trace (`tracing:`), 32 hex digits as in `traceparent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<Hex<'a>>,
    /// Which way a model call was translated, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub translation: Option<&'static str>,
    pub ts: Rfc3339,
    pub ttfb_ms: Option<f64>,
    /// How a tunnel ended: `closed`, `broken`, `idle_timeout`, `max_duration` (tunnel records
    /// only, when it was opened).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel_end: Option<&'static str>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub upstream_ms: Option<f64>,
    /// The end user the request was made for, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    /// Whether the action was verified (action records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

/// A timestamp written as RFC 3339 straight into the record (no intermediate `String`).
#[derive(Debug)]
pub struct Rfc3339(pub Timestamp);

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// Bytes written as lowercase hex straight into the record.
#[derive(Debug)]
pub struct Hex<'a>(pub &'a [u8]);

impl Serialize for Hex<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl AuditEvent {
    /// The record for this event at chain position `link`.
    pub fn record<'a>(&'a self, link: &Link<'a>) -> RequestRecord<'a> {
        let snapshot = self.snapshot.as_deref();
        let agent = snapshot
            .zip(self.agent)
            .and_then(|(s, a)| s.agent_id(a))
            .unwrap_or_default();
        let provider = snapshot
            .zip(self.provider)
            .and_then(|(s, p)| s.provider_name(p))
            .unwrap_or_default();
        let key_id = snapshot
            .zip(self.credential.as_ref())
            .and_then(|(s, credential)| s.credential_id(credential));
        let tunnel = self.tunnel.as_ref();
        let action = self.action.as_ref();
        RequestRecord {
            action: action.map(|a| a.name.as_str()),
            agent,
            amount_usd: action.and_then(|a| a.amount_usd),
            bytes_down: tunnel.map(|t| t.bytes_down),
            bytes_up: tunnel.map(|t| t.bytes_up),
            client_request_id: self
                .client_request_id
                .as_ref()
                .and_then(|id| id.to_str().ok()),
            code: self.code.as_str(),
            config_version: snapshot.map_or("", |s| s.version()),
            cost_usd: self.cost_usd,
            credential: Credential {
                actors: self
                    .credential
                    .as_ref()
                    .and_then(Presented::delegation)
                    .map(|d| d.actors.iter().map(|a| &**a).collect()),
                key_id,
                kind: self.credential.as_ref().map_or("none", Presented::kind),
                token_id: match &self.credential {
                    Some(Presented::Jwt(token)) => token.token_id.as_deref(),
                    _ => None,
                },
            },
            decision: if self.denied { "deny" } else { "allow" },
            destination: tunnel.map(|t| t.destination.as_str()),
            errors: action.map(|a| a.errors.iter().map(|c| c.as_str()).collect()),
            instance: link.instance,
            latency_ms: self.latency_ms,
            mcp: self.mcp.as_ref().map(|m| McpRecord {
                arguments_sha256: m.arguments_sha256.as_deref(),
                is_error: m.is_error,
                method: m.method.as_deref(),
                server: provider,
                tool: m.tool.as_deref(),
            }),
            method: self.method.as_str(),
            model: self.model.as_deref().unwrap_or_default(),
            path: &self.path,
            prev: link.prev,
            provider,
            provider_request_id: self
                .provider_request_id
                .as_ref()
                .and_then(|id| id.to_str().ok()),
            request_id: self
                .request_id
                .as_ref()
                .and_then(|id| id.to_str().ok())
                .unwrap_or_default(),
            revocation: self.revocation.as_ref().map(|r| RevocationRecord {
                reason: &r.reason,
                source: r.source,
            }),
            seq: link.seq,
            span_id: self.trace.as_ref().map(|(_, span)| Hex(span)),
            status: self.status,
            target: action.and_then(|a| a.target.as_deref()),
            tokens: self.tokens,
            tokens_source: self.tokens_source,
            trace_id: self.trace.as_ref().map(|(trace, _)| Hex(trace)),
            translation: self.translation,
            ts: Rfc3339(self.arrived),
            ttfb_ms: self.ttfb_ms,
            tunnel_end: tunnel.and_then(|t| t.end),
            kind: match (tunnel, action, &self.mcp) {
                (Some(_), _, _) => "tunnel",
                (None, Some(_), _) => "action",
                (None, None, Some(_)) => "mcp",
                (None, None, None) => "request",
            },
            upstream_ms: self.upstream_ms,
            user: self.user.as_deref(),
            verified: action.map(|a| a.verified),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Hex;

    #[test]
    fn ids_are_written_as_lowercase_hex() {
        let json = serde_json::to_string(&Hex(&[0x0a, 0xf7, 0x00, 0xff])).unwrap();
        assert_eq!(json, "\"0af700ff\"");
    }
}
