//! Header rewriting: what the provider sees in place of what the agent sent, and the rate-limit
//! headers the agent gets back.

use http::header::{
    HeaderName, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_LENGTH, EXPECT, HOST, PROXY_AUTHORIZATION,
    TRANSFER_ENCODING,
};
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::Duration;

use crate::limits::budget::WindowStatus;
use crate::limits::RateDecision;
use crate::providers::UpstreamAuth;

/// Request id header: Warden's own id, sent to the provider and returned to the client.
pub const REQUEST_ID: &str = "x-request-id";
/// Where the client's own `X-Request-ID` goes upstream (OpenAI's name for a caller's id): kept
/// beside Warden's, never in its place, so no agent can reuse another's id in the audit trail.
pub const CLIENT_REQUEST_ID: &str = "x-client-request-id";
pub const AGENT_ID: &str = "x-agent-id";
/// The end user a request is made for, when its body names none (`limits.per_user`); Warden's
/// own, never forwarded.
pub const USER: &str = "x-warden-user";
/// Warden's signed statement of the agent's identity, for providers with `identity_header`.
pub const AGENT_IDENTITY: &str = "x-agent-identity";
/// Where the client finds the provider's own `x-request-id` (SDKs and provider support ask for
/// it), since `X-Request-ID` carries Warden's id (SPEC).
pub const PROVIDER_REQUEST_ID: &str = "x-provider-request-id";

/// Headers that choose the provider account, project or billing, or carry a provider
/// credential. They are the operator's to set (`providers.<name>.headers`), never the agent's:
/// an agent sending `OpenAI-Organization` could bill another organization on the shared key.
pub const OPERATOR_HEADERS: &[&str] = &[
    "openai-organization",
    "openai-project",
    // Azure OpenAI's key header.
    "api-key",
    // Google's key and billing-project headers.
    "x-goog-api-key",
    "x-goog-user-project",
];

/// Headers that make a server act as another method than the request's (a `GET` grant must
/// not become a `DELETE`): never forwarded.
pub const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Longest client request id Warden keeps (longer ones are dropped).
const MAX_REQUEST_ID_LEN: usize = 128;

/// A new request id (UUID v4): Warden's, authoritative in metrics, logs and audit.
pub fn request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut buf);
    HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("invalid"))
}

/// The client's own `X-Request-ID`, if it is 1–128 characters of `A-Z a-z 0-9 - _ . :`
/// (recorded beside Warden's id as `client_request_id`).
pub fn client_request_id(request: &RequestHeader) -> Option<HeaderValue> {
    let value = request.headers.get(REQUEST_ID)?;
    let bytes = value.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b));
    well_formed.then(|| value.clone())
}

/// What the provider needs to see of this request.
pub struct UpstreamIdentity<'a> {
    /// Origin-form target on the provider (built per request: it joins the provider's base path
    /// and the agent's path).
    pub path_and_query: String,
    pub authority: &'a HeaderValue,
    pub auth: &'a UpstreamAuth,
    pub agent_id: &'a HeaderValue,
    pub request_id: Option<&'a HeaderValue>,
    /// The client's own request id, sent as [`CLIENT_REQUEST_ID`].
    pub client_request_id: Option<&'a HeaderValue>,
    /// The exact length of the body Warden read; `None` for a body streamed as the client
    /// framed it (service calls: its `Content-Length` or chunking is kept).
    pub body_len: Option<usize>,
    /// The body differs from the client's (a digest of it would be wrong).
    pub body_rewritten: bool,
    /// Headers the provider's policy sets (`OpenAI-Organization`, …).
    pub provider_headers: &'a [(HeaderName, HeaderValue)],
    /// `X-Agent-Identity`, for a provider that asks Warden to vouch for the agent.
    pub vouch: Option<HeaderValue>,
}

/// Rewrites the upstream request: origin-form path, provider `Host`, provider key in place of
/// every agent credential, Warden's identity headers in place of any the client sent, and an
/// exact `Content-Length` for the body Warden already read.
pub fn rewrite_upstream(req: &mut RequestHeader, up: UpstreamIdentity<'_>) -> pingora::Result<()> {
    let uri = http::Uri::builder()
        .path_and_query(up.path_and_query)
        .build()
        .map_err(|e| {
            pingora::Error::because(pingora::ErrorType::InternalError, "upstream uri", e)
        })?;
    req.set_uri(uri);
    for name in [AUTHORIZATION, PROXY_AUTHORIZATION, EXPECT] {
        req.remove_header(&name);
    }
    if up.body_len.is_some() {
        // Warden reads LLM responses for usage (no compression) and sends the body it read.
        req.remove_header(&ACCEPT_ENCODING);
        req.remove_header(&TRANSFER_ENCODING);
    }
    for name in [
        "x-api-key",
        "proxy-connection",
        REQUEST_ID,
        "signature",
        "signature-input",
    ]
    .iter()
    .chain(METHOD_OVERRIDES)
    .chain(OPERATOR_HEADERS)
    {
        req.remove_header(*name);
    }
    remove_agent_headers(req);
    if up.body_rewritten {
        req.remove_header("content-digest");
    }
    req.insert_header(HOST, up.authority.clone())?;
    if let Some(len) = up.body_len {
        req.insert_header(CONTENT_LENGTH, len)?;
    }
    match up.auth {
        UpstreamAuth::Bearer(value) => req.insert_header(AUTHORIZATION, value.clone())?,
        UpstreamAuth::XApiKey(value) => req.insert_header("x-api-key", value.clone())?,
        UpstreamAuth::None | UpstreamAuth::Missing(_) => {}
    }
    req.insert_header(AGENT_ID, up.agent_id.clone())?;
    if let Some(id) = up.request_id {
        req.insert_header(REQUEST_ID, id.clone())?;
    }
    if let Some(id) = up.client_request_id {
        req.insert_header(CLIENT_REQUEST_ID, id.clone())?;
    }
    for (name, value) in up.provider_headers {
        req.insert_header(name.clone(), value.clone())?;
    }
    if let Some(vouch) = up.vouch {
        req.insert_header(AGENT_IDENTITY, vouch)?;
    }
    Ok(())
}

/// Removes every `X-Agent-*` header the client sent (only Warden asserts agent identity).
fn remove_agent_headers(req: &mut RequestHeader) {
    let has_any = req.headers.keys().any(is_agent_header);
    if !has_any {
        return;
    }
    let names: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|n| is_agent_header(n))
        .cloned()
        .collect();
    for name in names {
        req.remove_header(&name);
    }
}

fn is_agent_header(name: &HeaderName) -> bool {
    name.as_str().starts_with("x-agent-") || name.as_str() == USER
}

/// Adds the agent's request limit in both spellings clients read: `X-RateLimit-Limit`,
/// `-Remaining` and `-Reset` (seconds), and OpenAI's `x-ratelimit-limit-requests`,
/// `-remaining-requests` and `-reset-requests` (a duration, `6m0s`). They replace the
/// provider's: the agent's own limit is the one that refuses it first.
pub fn insert_rate_limit(header: &mut ResponseHeader, rate: &RateDecision) -> pingora::Result<()> {
    let (limit, remaining, reset) = match *rate {
        RateDecision::Allowed {
            limit,
            remaining,
            reset,
        } => (limit, remaining, reset),
        RateDecision::Limited { limit, retry_after } => (limit, 0, retry_after),
        RateDecision::Unavailable => return Ok(()),
    };
    let reset_secs = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
    header.insert_header("x-ratelimit-limit", limit)?;
    header.insert_header("x-ratelimit-remaining", remaining)?;
    header.insert_header("x-ratelimit-reset", reset_secs)?;
    header.insert_header("x-ratelimit-limit-requests", limit)?;
    header.insert_header("x-ratelimit-remaining-requests", remaining)?;
    header.insert_header("x-ratelimit-reset-requests", openai_duration(reset))?;
    Ok(())
}

/// Adds the agent's request and token limits to an answer it was admitted for.
pub fn insert_limits(
    header: &mut ResponseHeader,
    rate: Option<&RateDecision>,
    tokens: Option<WindowStatus>,
) -> pingora::Result<()> {
    if let Some(rate) = rate {
        insert_rate_limit(header, rate)?;
    }
    if let Some(w) = tokens {
        let reset = Duration::from_secs(u64::try_from(w.reset_secs).unwrap_or(0));
        insert_token_limit(header, w.limit, w.remaining, reset)?;
    }
    Ok(())
}

/// Adds OpenAI's `x-ratelimit-limit-tokens`, `-remaining-tokens` and `-reset-tokens` for the
/// agent's tightest token window (its own or its team's), replacing the provider's.
pub fn insert_token_limit(
    header: &mut ResponseHeader,
    limit: u64,
    remaining: u64,
    reset: Duration,
) -> pingora::Result<()> {
    header.insert_header("x-ratelimit-limit-tokens", limit)?;
    header.insert_header("x-ratelimit-remaining-tokens", remaining)?;
    header.insert_header("x-ratelimit-reset-tokens", openai_duration(reset))?;
    Ok(())
}

/// A wait as OpenAI writes it in `x-ratelimit-reset-*`: `20ms` under a second, else hours,
/// minutes and whole seconds (rounded up), leading zero units left out: `1s`, `6m0s`, `1h0m5s`.
fn openai_duration(wait: Duration) -> String {
    if wait < Duration::from_secs(1) {
        return format!("{}ms", wait.as_millis().max(1));
    }
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_wardens_and_the_clients_is_kept_when_well_formed() {
        let mut req = RequestHeader::build("POST", b"/v1/x", None).unwrap();
        req.insert_header(REQUEST_ID, "abc-123").unwrap();
        assert_eq!(client_request_id(&req).unwrap(), "abc-123");
        req.insert_header(REQUEST_ID, "bad id\t").unwrap();
        assert_eq!(client_request_id(&req), None);
        let generated = request_id();
        assert_eq!(generated.len(), 36);
        assert_ne!(generated, request_id());
    }

    #[test]
    fn rewrite_swaps_credentials_and_identity() {
        let mut req =
            RequestHeader::build("POST", b"http://api.example/v1/chat/completions?x=1", None)
                .unwrap();
        for (k, v) in [
            ("authorization", "Bearer agent-secret"),
            ("x-api-key", "agent-secret"),
            ("proxy-authorization", "Bearer agent-secret"),
            ("x-agent-id", "forged"),
            ("x-agent-role", "admin"),
            ("x-warden-user", "alice"),
            ("transfer-encoding", "chunked"),
            ("expect", "100-continue"),
            ("accept-encoding", "gzip"),
            ("anthropic-version", "2023-06-01"),
            ("openai-organization", "org-someone-else"),
            ("OpenAI-Project", "proj-x"),
            ("api-key", "agent-secret"),
            ("x-http-method-override", "DELETE"),
        ] {
            req.insert_header(k, v).unwrap();
        }
        let auth = UpstreamAuth::XApiKey(HeaderValue::from_static("provider-key"));
        let up = UpstreamIdentity {
            path_and_query: "/v1/chat/completions?x=1".into(),
            authority: &HeaderValue::from_static("api.example"),
            auth: &auth,
            agent_id: &HeaderValue::from_static("bot"),
            request_id: Some(&HeaderValue::from_static("rid")),
            client_request_id: Some(&HeaderValue::from_static("theirs")),
            body_len: Some(42),
            body_rewritten: false,
            provider_headers: &[(
                HeaderName::from_static("openai-organization"),
                HeaderValue::from_static("org-operator"),
            )],
            vouch: None,
        };
        rewrite_upstream(&mut req, up).unwrap();
        let h = &req.headers;
        assert_eq!(req.uri.to_string(), "/v1/chat/completions?x=1");
        assert_eq!(h["x-api-key"], "provider-key");
        assert!(h.get("authorization").is_none() && h.get("proxy-authorization").is_none());
        assert_eq!(h["x-agent-id"], "bot");
        assert!(h.get("x-agent-role").is_none() && h.get("x-warden-user").is_none());
        assert_eq!(h["content-length"], "42");
        assert!(h.get("transfer-encoding").is_none() && h.get("expect").is_none());
        assert!(h.get("accept-encoding").is_none());
        assert_eq!(h["anthropic-version"], "2023-06-01");
        assert_eq!(h["host"], "api.example");
        assert_eq!(h["x-request-id"], "rid");
        assert_eq!(h["x-client-request-id"], "theirs");
        assert_eq!(h["openai-organization"], "org-operator");
        assert!(h.get("openai-project").is_none() && h.get("api-key").is_none());
        assert!(h.get("x-http-method-override").is_none());
    }

    #[test]
    fn waits_are_written_as_openai_writes_them() {
        let cases = [
            (Duration::from_millis(20), "20ms"),
            (Duration::from_millis(1500), "2s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_secs(3605), "1h0m5s"),
        ];
        for (wait, written) in cases {
            assert_eq!(openai_duration(wait), written);
        }
    }
}
