//! Writing a refusal to the client: the body in the shape of the API the client speaks, the
//! header with the SPEC code and retry hints, and the one function that answers and records.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Error;

use super::error::Refusal;
use super::headers;
use crate::code::Code;
use crate::limits::RateDecision;

/// How a refusal's body is shaped: as OpenAI's errors (`{"error":{"message","type","code"}}`),
/// or, for a client speaking Anthropic's API, as Anthropic's
/// (`{"type":"error","error":{"type","message"}}`, with Warden's `code` beside), so that each
/// SDK raises the exception it raises for its provider's own refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    OpenAi,
    Anthropic,
    /// A JSON-RPC error, for MCP clients (`/mcp/<server>`).
    JsonRpc,
    /// RFC 6749 §5.2's `{"error", "error_description"}`, for token exchange (`/v1/token`).
    OAuth,
}

impl ErrorShape {
    /// Anthropic's for `/v1/messages` (and its sub-paths) or a request that sends
    /// `anthropic-version` (every Anthropic SDK call does); OpenAI's otherwise.
    pub fn of(request: &RequestHeader) -> ErrorShape {
        let path = request.uri.path();
        if path.starts_with(crate::mcp::PREFIX) {
            return ErrorShape::JsonRpc;
        }
        if path == super::token::PATH {
            return ErrorShape::OAuth;
        }
        let messages = path
            .strip_prefix("/v1/messages")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if messages || request.headers.contains_key("anthropic-version") {
            ErrorShape::Anthropic
        } else {
            ErrorShape::OpenAi
        }
    }
}

impl Refusal {
    /// The JSON error body, in the shape the client's SDK reads as its provider's own.
    pub fn body(&self, shape: ErrorShape) -> Bytes {
        let body = match shape {
            ErrorShape::OpenAi => serde_json::json!({
                "error": {
                    "message": self.message(),
                    "type": self.kind(),
                    "code": self.code().as_str(),
                }
            }),
            ErrorShape::Anthropic => serde_json::json!({
                "type": "error",
                "error": {
                    "type": self.anthropic_kind(),
                    "message": self.message(),
                    "code": self.code().as_str(),
                }
            }),
            ErrorShape::JsonRpc => self.json_rpc_body(),
            ErrorShape::OAuth => serde_json::json!({
                "error": super::token::error_code(self),
                "error_description": self.message(),
            }),
        };
        Bytes::from(body.to_string())
    }

    /// Anthropic's error `type`: OpenAI's, but for a body too large (`request_too_large`).
    fn anthropic_kind(&self) -> &'static str {
        match self {
            Refusal::BodyTooLarge => "request_too_large",
            _ => self.kind(),
        }
    }

    /// The full response header: status, code header, request id, retry hints.
    pub fn response_header(
        &self,
        request_id: Option<&HeaderValue>,
        body_len: usize,
    ) -> pingora::Result<ResponseHeader> {
        let mut header = ResponseHeader::build(self.status(), Some(6))?;
        header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        header.insert_header(http::header::CONTENT_LENGTH, body_len)?;
        header.insert_header("x-warden-error", self.code().as_str())?;
        if let Some(id) = request_id {
            header.insert_header("x-request-id", id.clone())?;
        }
        if matches!(self, Refusal::RequestExceedsBudget(_)) {
            // What the OpenAI and Anthropic SDKs read before their own retry rules.
            header.insert_header("x-should-retry", "false")?;
        }
        if let Refusal::TokenBudgetExhausted(e) = self {
            headers::insert_token_limit(&mut header, e.limit, e.remaining, e.retry_after)?;
        }
        if let Some(wait) = self.retry_after() {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            header.insert_header(http::header::RETRY_AFTER, secs.max(1))?;
            header.insert_header("retry-after-ms", wait.as_millis().max(1) as u64)?;
        }
        Ok(header)
    }
}

impl Refusal {
    /// The whole answer to a refused CONNECT (HTTPS_PROXY mode) and its status: a credential
    /// that is missing, unreadable or expired is 407 with `Proxy-Authenticate` (what proxy
    /// clients answer with credentials), anything else its own status; the connection closes.
    pub fn connect_answer(&self) -> (StatusCode, Vec<u8>) {
        let row = self.row();
        let status = match row.code {
            Code::MissingCredentials | Code::InvalidCredentials | Code::ExpiredCredentials => {
                StatusCode::PROXY_AUTHENTICATION_REQUIRED
            }
            _ => row.status,
        };
        let body = self.body(ErrorShape::OpenAi);
        let mut answer = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Warden-Error: {}\r\nConnection: close\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len(),
            row.code.as_str(),
        );
        if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            answer.push_str("Proxy-Authenticate: Basic realm=\"warden\"\r\nProxy-Authenticate: Bearer realm=\"warden\"\r\n");
        }
        answer.push_str("\r\n");
        let mut answer = answer.into_bytes();
        answer.extend_from_slice(&body);
        (status, answer)
    }
}

/// Writes a refusal as a complete response on the client session.
///
/// Header and body are written directly (not `respond_error`, which always closes) so that a
/// refusal after the body was read leaves the connection reusable.
pub async fn respond(
    session: &mut Session,
    refusal: &Refusal,
    request_id: Option<&HeaderValue>,
    rate: Option<&RateDecision>,
) -> pingora::Result<()> {
    let body = refusal.body(ErrorShape::of(session.req_header()));
    let mut header = refusal.response_header(request_id, body.len())?;
    if let Some(rate) = rate {
        headers::insert_rate_limit(&mut header, rate)?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// Answers the client with `refusal` and records it as the request's outcome (metrics, audit);
/// what the request held (its slot, its reservations) is given back first.
pub async fn refuse(
    session: &mut Session,
    ctx: &mut super::ctx::RequestCtx,
    refusal: Refusal,
) -> pingora::Result<()> {
    ctx.admission.release();
    let written = respond(
        session,
        &refusal,
        ctx.request_id.as_ref(),
        ctx.admission.rate.as_ref(),
    )
    .await;
    ctx.refusal = Some(refusal);
    written
}

/// Answers a request whose upstream failed before a response started (502/504 with the SPEC
/// code); one already answering is cut, and neither connection is reused.
pub async fn fail_to_proxy(
    session: &mut Session,
    e: &Error,
    ctx: &mut super::ctx::RequestCtx,
) -> pingora::proxy::FailToProxy {
    let writable = session.response_written().is_none()
        && !matches!(e.esource(), pingora::ErrorSource::Downstream);
    if !writable {
        return pingora::proxy::FailToProxy {
            error_code: session.response_written().map_or(0, |r| r.status.as_u16()),
            can_reuse_downstream: false,
        };
    }
    let refusal = Refusal::from_upstream_error(e);
    let error_code = refusal.status().as_u16();
    if let Err(e) = refuse(session, ctx, refusal).await {
        log::debug!("cannot send the error response: {e}");
    }
    pingora::proxy::FailToProxy {
        error_code,
        can_reuse_downstream: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(answer: &[u8]) -> (String, serde_json::Value) {
        let text = std::str::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (
            head.to_ascii_lowercase(),
            serde_json::from_str(body).unwrap(),
        )
    }

    #[test]
    fn a_connect_without_a_usable_credential_is_asked_for_one() {
        for refusal in [
            Refusal::MissingCredentials,
            Refusal::InvalidCredentials("unknown key"),
            Refusal::ExpiredCredentials,
        ] {
            let (status, answer) = refusal.connect_answer();
            assert_eq!(status, StatusCode::PROXY_AUTHENTICATION_REQUIRED);
            let (head, body) = parsed(&answer);
            assert!(head.starts_with("http/1.1 407 proxy authentication required\r\n"));
            assert!(head.contains("proxy-authenticate: basic realm=\"warden\""));
            assert!(head.contains("connection: close"));
            assert_eq!(body["error"]["code"], refusal.code().as_str());
        }
        let (status, answer) = Refusal::AgentRevoked.connect_answer();
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (head, _) = parsed(&answer);
        assert!(!head.contains("proxy-authenticate"));
        assert!(head.contains("x-warden-error: agent_revoked"));
    }

    #[test]
    fn anthropic_clients_get_anthropics_shape() {
        let body: serde_json::Value =
            serde_json::from_slice(&Refusal::BodyTooLarge.body(ErrorShape::Anthropic)).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "request_too_large");
        assert_eq!(body["error"]["code"], "body_too_large");
        let openai: serde_json::Value =
            serde_json::from_slice(&Refusal::BodyTooLarge.body(ErrorShape::OpenAi)).unwrap();
        assert_eq!(openai["error"]["type"], "invalid_request_error");
    }
}
