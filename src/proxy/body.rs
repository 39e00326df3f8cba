//! Reading the whole request body, bounded by `server.max_body_bytes`, and checking it against
//! the digest a message signature covers.

use bytes::{Bytes, BytesMut};
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::error::Refusal;
use crate::identity::Credential;

/// Bytes of body Pingora 0.9.1 keeps in its retry buffer (`BODY_BUF_LIMIT`, private there) and
/// so can replay upstream itself.
pub const RETRY_BUFFER_LIMIT: u64 = 64 * 1024;

/// The body length the request declares with `Content-Length`, if it does (and can be read).
pub fn declared_length(request: &RequestHeader) -> Option<u64> {
    request
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Answers `Expect: 100-continue`, once the request is admitted: the client then sends its body
/// (`Expect` itself is not forwarded).
pub async fn answer_continue(session: &mut Session) -> Result<(), Refusal> {
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .write_continue_response()
            .await
            .map_err(|e| Refusal::InvalidJson(format!("client connection failed: {e}")))?;
    }
    Ok(())
}

/// Reads the request body (answering `Expect: 100-continue` first), refusing with
/// `body_too_large` as soon as it is known to exceed `max` — from `Content-Length` before a
/// byte is read, or while reading a chunked body.
pub async fn read(session: &mut Session, max: usize) -> Result<Bytes, Refusal> {
    let declared = declared_length(session.req_header());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(Refusal::BodyTooLarge);
    }
    answer_continue(session).await?;
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total = 0usize;
    loop {
        let chunk = session.read_request_body().await.map_err(|e| {
            Refusal::InvalidJson(format!("cannot read request body: {}", e.etype().as_str()))
        })?;
        let Some(chunk) = chunk else { break };
        total += chunk.len();
        if total > max {
            return Err(Refusal::BodyTooLarge);
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(head), None) => {
                let mut joined =
                    BytesMut::with_capacity(joined_capacity(head.len() + chunk.len(), declared));
                joined.extend_from_slice(head);
                joined.extend_from_slice(&chunk);
                rest = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&chunk),
        }
    }
    Ok(match (first, rest) {
        (_, Some(joined)) => joined.freeze(),
        (Some(only), None) => only,
        (None, None) => Bytes::new(),
    })
}

/// Room for a body once its second chunk arrives: twice what has been received, then growing
/// as more arrives. A declared `Content-Length` only caps it: a client that declares 10 MB
/// and sends a few bytes must not pin 10 MB per connection.
fn joined_capacity(received: usize, declared: Option<u64>) -> usize {
    let room = received.saturating_mul(2);
    declared.map_or(room, |len| {
        room.min(usize::try_from(len).unwrap_or(usize::MAX))
            .max(received)
    })
}

/// Whether the request is signed (RFC 9421) and its body bound by a `Content-Digest` (every
/// signed request with a body is: the signature must cover the digest).
pub fn is_signed(credential: Option<&Credential>, request: &RequestHeader) -> bool {
    matches!(credential, Some(Credential::Signature(_)))
        && (request.headers.contains_key("content-digest")
            || !matches!(request.method, http::Method::GET | http::Method::HEAD))
}

/// For a request signed over its `Content-Digest`: the body Warden read (and forwards) must be
/// the one the signature covers.
pub fn check_signed(
    credential: Option<&Credential>,
    request: &RequestHeader,
    body: &[u8],
) -> Result<(), Refusal> {
    if is_signed(credential, request) {
        crate::identity::signature::check_content_digest(&request.headers, body)
            .map_err(Refusal::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_follows_what_arrived_not_what_was_declared() {
        assert_eq!(joined_capacity(2_000, Some(10_000_000)), 4_000);
        assert_eq!(joined_capacity(2_000, Some(3_000)), 3_000);
        assert_eq!(joined_capacity(2_000, None), 4_000);
        assert_eq!(joined_capacity(2_000, Some(10)), 2_000);
    }
}
