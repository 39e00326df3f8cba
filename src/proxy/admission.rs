//! The request limits and checks every kind of request shares: the agent's concurrency slot
//! and request rate, the body a message signature binds, and giving back what admission took
//! when a later limit refuses.

use pingora::proxy::Session;

use super::{Refusal, RequestCtx};
use crate::identity::Credential;
use crate::policy::Agent;

/// Takes one of the agent's concurrent slots, held by the request until it ends.
pub(super) fn take_concurrency_slot(agent: &Agent, ctx: &mut RequestCtx) -> Result<(), Refusal> {
    if let Some((max, in_flight)) = &agent.limits.max_concurrent {
        ctx.in_flight = Some(
            in_flight
                .try_acquire(*max)
                .ok_or(Refusal::ConcurrencyLimited(*max))?,
        );
    }
    Ok(())
}

/// Takes one request from the agent's request rate (its decision also feeds the
/// `X-RateLimit-*` headers).
pub(super) fn take_rate(agent: &Agent, ctx: &mut RequestCtx) -> Result<(), Refusal> {
    if let Some(rate) = &agent.limits.requests_per_minute {
        let decision = rate.check();
        ctx.rate = Some(decision);
        if let Some(refusal) = Refusal::for_rate(decision) {
            return Err(refusal);
        }
    }
    Ok(())
}

/// The agent's request limits (concurrency, then rate), for every request it makes: model
/// lists, verifications and service calls count like model calls.
pub(crate) fn take_request_limits(agent: &Agent, ctx: &mut RequestCtx) -> Result<(), Refusal> {
    take_concurrency_slot(agent, ctx)?;
    take_rate(agent, ctx).inspect_err(|_| ctx.in_flight = None)
}

/// For a request signed over its `Content-Digest`: the body Warden read (and forwards) must be
/// the one the signature covers.
pub(crate) fn check_signed_body(
    ctx: &RequestCtx,
    session: &Session,
    body: &[u8],
) -> Result<(), Refusal> {
    if signed_body(ctx, session) {
        crate::identity::signature::check_content_digest(&session.req_header().headers, body)
            .map_err(Refusal::from)?;
    }
    Ok(())
}

/// Whether the request is signed (RFC 9421) and its body bound by a `Content-Digest` (every
/// signed request with a body is: the signature must cover the digest).
pub(crate) fn signed_body(ctx: &RequestCtx, session: &Session) -> bool {
    let request = session.req_header();
    matches!(ctx.credential, Some(Credential::Signature(_)))
        && (request.headers.contains_key("content-digest")
            || !matches!(request.method, http::Method::GET | http::Method::HEAD))
}

/// Gives back what admission took before a later limit refused: the concurrency slot and the
/// token and spend reservations.
pub(super) fn release(agent: &Agent, ctx: &mut RequestCtx) {
    ctx.in_flight = None;
    agent.limits.budgets.release(std::mem::take(&mut ctx.held));
}
