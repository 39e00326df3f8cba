//! Forwarding bodies larger than Pingora's 64 KiB retry buffer.
//!
//! Warden reads the whole body before choosing the upstream (the model is in it). Pingora 0.9.1
//! replays a pre-read body upstream only from its retry buffer, which stops at 64 KiB; a larger
//! one would never be sent (PINGORA_NOTES.md). Such a body is forwarded through one Pingora
//! *subrequest* fed with the body Warden already holds. The subrequest runs through the same
//! `ProxyHttp` phases as any request: [`adopt`] gives it the main request's decision, so its
//! upstream phases run exactly as the one-pass path's do, and [`hand_back`] returns what
//! happened upstream to the main request, which alone writes errors and records the request.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use pingora::proxy::subrequest::pipe::{pipe_subrequest, InputBody, InputBodyType};
use pingora::proxy::subrequest::{BodyMode, Ctx as SubrequestCtx};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::ctx::{Forward, RequestCtx, UpstreamLeg};
use super::error::{self, Refusal};
use crate::config::Snapshot;
use crate::limits::RateDecision;

/// Where a subrequest leaves its [`UpstreamLeg`] for the main request.
pub type HandBack = Arc<Mutex<Option<UpstreamLeg>>>;

/// The main request's decision, as the subrequest needs it.
struct Handoff {
    snapshot: Arc<Snapshot>,
    agent: Option<usize>,
    provider: Option<usize>,
    request_id: Option<http::HeaderValue>,
    rate: Option<RateDecision>,
    forward: Forward,
    hand_back: HandBack,
}

/// Forwards an admitted request whose body Warden holds in full, and answers the client with
/// the provider's response (or the refusal for a provider that failed before answering).
///
/// Returns `Ok(true)`: the response is written, as `request_filter` promises Pingora.
pub async fn forward(session: &mut Session, ctx: &mut RequestCtx, body: Bytes) -> Result<bool> {
    let (Some(snapshot), Some(forward)) = (ctx.snapshot.clone(), ctx.forward) else {
        return Err(Error::explain(
            ErrorType::InternalError,
            "large body forwarded before admission",
        ));
    };
    let Some(spawner) = session.subrequest_spawner.as_ref() else {
        return Err(Error::explain(
            ErrorType::InternalError,
            "subrequests are not enabled",
        ));
    };
    let hand_back = HandBack::default();
    let handoff = Handoff {
        snapshot,
        agent: ctx.agent,
        provider: ctx.provider,
        request_id: ctx.request_id.clone(),
        rate: ctx.rate,
        forward,
        hand_back: Arc::clone(&hand_back),
    };
    let sub_ctx = SubrequestCtx::builder()
        .body_mode(BodyMode::ExpectBody)
        .user_ctx(Box::new(Some(handoff)))
        .build();
    let (prepared, handle) = spawner.create_subrequest(session.as_ref(), sub_ctx);
    let piped = pipe_subrequest(
        session,
        prepared,
        handle,
        |task| Ok(Some(task)),
        InputBodyType::Preset(InputBody::Bytes(vec![body])),
    )
    .await;
    let pipe_failure = match piped {
        Ok(mut state) => {
            if let Some(join) = state.join_handle.take() {
                if let Err(e) = join.await {
                    log::error!("upstream subrequest task failed: {e}");
                }
            }
            None
        }
        Err(e) if session.response_written().is_some() => return Err(e.error),
        Err(e) => Some(Refusal::from_upstream_error(&e.error)),
    };
    let leg = hand_back
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(leg) = leg {
        ctx.upstream = leg;
    }
    if session.response_written().is_none() {
        let refusal = pipe_failure
            .or_else(|| ctx.upstream.failure.take())
            .unwrap_or_else(|| {
                Refusal::UpstreamUnavailable("provider closed the connection".into())
            });
        let written = error::respond(
            session,
            &refusal,
            ctx.request_id.as_ref(),
            ctx.rate.as_ref(),
        )
        .await;
        ctx.refusal = Some(refusal);
        written?;
    }
    Ok(true)
}

/// In the subrequest: takes the main request's decision into this ctx. Returns false for any
/// request that is not such a subrequest.
pub fn adopt(session: &mut Session, ctx: &mut RequestCtx) -> bool {
    let handoff = session
        .subrequest_ctx
        .as_mut()
        .and_then(|sub| sub.user_ctx_mut())
        .and_then(|user| user.downcast_mut::<Option<Handoff>>())
        .and_then(Option::take);
    let Some(handoff) = handoff else {
        return false;
    };
    ctx.snapshot = Some(handoff.snapshot);
    ctx.agent = handoff.agent;
    ctx.provider = handoff.provider;
    ctx.request_id = handoff.request_id;
    ctx.rate = handoff.rate;
    ctx.forward = Some(handoff.forward);
    ctx.hand_back = Some(handoff.hand_back);
    true
}

/// In the subrequest, when it ends: gives what happened upstream to the main request. Returns
/// false for any request that is not such a subrequest (it records itself).
pub fn hand_back(ctx: &mut RequestCtx) -> bool {
    let Some(slot) = ctx.hand_back.take() else {
        return false;
    };
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(std::mem::take(&mut ctx.upstream));
    true
}

/// Whether this is the subrequest of a large body: it leaves error responses to the main
/// request, which alone knows whether anything was sent to the client.
pub fn is_subrequest(ctx: &RequestCtx) -> bool {
    ctx.hand_back.is_some()
}
