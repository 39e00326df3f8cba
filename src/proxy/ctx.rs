//! Per-request state: what admission decided, and what happened upstream.

use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;

use super::admission::Admission;
use super::error::Refusal;
use super::stream_usage::UsageChunkFilter;
use super::usage::UsageMeter;
use crate::clock::Clock;
use crate::config::Snapshot;

/// What the upstream phases need to forward an admitted request, beyond the ctx's snapshot,
/// agent and provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forward {
    /// Exact length of the body sent upstream (`Content-Length`).
    pub body_len: usize,
    /// Warden changed the body (asked a stream for usage): digests of the original are dropped.
    pub rewritten: bool,
    /// Warden read the whole body and sends exactly `body_len` bytes (every model call; a
    /// service call only when its signed body was checked). Otherwise the body streams as the
    /// client framed it.
    pub whole: bool,
}

/// An admitted service call: the service (an index into the snapshot's providers) and how
/// much of the path is Warden's (`/svc/<name>`), stripped before forwarding.
#[derive(Debug, Clone, Copy)]
pub struct ServiceCall {
    pub service: usize,
    pub prefix_len: usize,
}

/// What happened on the way to the provider and back, filled by the upstream phases.
#[derive(Debug, Default)]
pub struct UpstreamLeg {
    /// When Warden asked for a connection to the provider (the last attempt's, if retried).
    pub started: Option<Instant>,
    /// When the provider's response header arrived.
    pub first_byte: Option<Instant>,
    /// Reads token usage from the response body as it passes.
    pub meter: UsageMeter,
    /// Hides the usage chunk Warden asked for on the client's behalf.
    pub usage_filter: Option<UsageChunkFilter>,
    /// When the first byte of the response body passed (a stream's first token).
    pub first_chunk: Option<Instant>,
    /// The provider's own `x-request-id`, when it sent one other than Warden's.
    pub provider_request_id: Option<HeaderValue>,
    /// The request creates a provider object (`POST /v1/responses`, `/v1/files`, …) whose id
    /// is still to be recorded as its agent's.
    pub creates: bool,
}

/// One request's context (Pingora's `CTX`).
pub struct RequestCtx {
    pub started: Instant,
    /// Wall-clock arrival time: the "now" of credential expiry and suspension checks, and the
    /// audit event's `ts`.
    pub arrived: jiff::Timestamp,
    /// Loaded once at the start of the request; every decision reads this one.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Warden's id for the request (authoritative).
    pub request_id: Option<HeaderValue>,
    /// The client's own `X-Request-ID`, kept beside Warden's.
    pub client_request_id: Option<HeaderValue>,
    pub agent: Option<usize>,
    /// The credential the agent was identified by (kind and id, never the secret).
    pub credential: Option<crate::identity::Credential>,
    pub model: Option<String>,
    /// The request's own cap on output tokens, as sent (`gen_ai.request.max_tokens`).
    pub max_tokens: Option<u64>,
    /// The request's trace span, when the policy traces.
    pub span: Option<crate::telemetry::RequestSpan>,
    /// The end user the request is made for (cut at 256 bytes), for `per_user` and audit.
    pub user: Option<String>,
    pub provider: Option<usize>,
    /// The limits the request holds (slot, rate decision, reservations), settled when it ends.
    pub admission: Admission,
    /// A call to a service (`/svc/<name>/…`), whose body is streamed as sent.
    pub service: Option<ServiceCall>,
    /// A request to an MCP server (`/mcp/<server>`): what it is, and its answer's filter.
    pub mcp: Option<super::mcp::McpCall>,
    /// A model call in the other API than its provider's: how it is translated.
    pub translation: Option<super::translation::Translation>,
    /// `POST /v1/verify`: the action judged, for the audit event.
    pub action: Option<crate::audit::event::Action>,
    /// Set when Warden answered with an error instead of the provider's response.
    pub refusal: Option<Refusal>,
    /// Set once the request is admitted for forwarding.
    pub forward: Option<Forward>,
    pub upstream: UpstreamLeg,
}

impl RequestCtx {
    /// A request that has just arrived, by `clock`.
    pub fn new(clock: &dyn Clock) -> Self {
        RequestCtx {
            started: clock.instant(),
            arrived: clock.now(),
            snapshot: None,
            request_id: None,
            client_request_id: None,
            agent: None,
            credential: None,
            model: None,
            max_tokens: None,
            span: None,
            user: None,
            provider: None,
            admission: Admission::default(),
            service: None,
            mcp: None,
            translation: None,
            action: None,
            refusal: None,
            forward: None,
            upstream: UpstreamLeg::default(),
        }
    }
}

/// The credential of the CONNECT an intercepted request arrived through (HTTPS_PROXY mode),
/// attached to the connection by the tunnel front. The request is identified by it, not by
/// the credential headers it carries itself (those are stripped like any agent credential).
pub struct TunnelCredential {
    headers: http::HeaderMap,
    /// The service whose host the tunnel reached, if any: its requests are service calls.
    service: Option<String>,
}

impl TunnelCredential {
    /// The credential `secret` (an API key or a JWT) as the identity check reads it; `None` if
    /// it cannot be a header value.
    pub fn new(secret: &str) -> Option<Self> {
        let value = http::HeaderValue::from_str(&format!("Bearer {secret}")).ok()?;
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        Some(TunnelCredential {
            headers,
            service: None,
        })
    }

    /// The same credential, for a tunnel to `service`'s host.
    pub fn to_service(self, service: &str) -> Self {
        TunnelCredential {
            service: Some(service.to_string()),
            ..self
        }
    }

    /// The service this tunnel reached, by name.
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// An `Authorization: Bearer` header carrying the credential.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }
}

impl std::fmt::Debug for TunnelCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TunnelCredential(*****)")
    }
}
