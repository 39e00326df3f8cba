//! Settling a request when it ends: how it ended (its code), what it is billed (the
//! provider's usage report, or an estimate of a stream cut short), and its budgets charged
//! with that — or given back, or kept, by whether the provider may have billed it.

use pingora::proxy::Session;
use pingora::{Error, ErrorSource};

use super::usage::Usage;
use super::{Refusal, RequestCtx};
use crate::audit::event::TokensSource;
use crate::code::Code;
use crate::limits::pricing::Billed;

/// How a request ended and what it cost.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outcome {
    pub code: Code,
    /// The status sent to the client, if a response started.
    pub status: Option<u16>,
    /// The provider's usage report, as metered.
    pub usage: Option<Usage>,
    /// What the request is billed: the report, or the estimate of a stream cut short.
    pub billed: Option<Billed>,
    pub source: Option<TokensSource>,
    /// `billed` at the model's price, in micro-dollars.
    pub cost: Option<u64>,
}

/// The request's code: its refusal's, else from the response and the error that ended it. A
/// response that started but did not finish is not `ok`: the error says who broke it (the
/// client hanging up: `client_closed`; the provider failing mid-body: its upstream code).
fn code(session: &Session, error: Option<&Error>, ctx: &RequestCtx) -> (Code, Option<u16>) {
    let status = session.response_written().map(|r| r.status.as_u16());
    let code = match (&ctx.refusal, status, error) {
        (Some(refusal), _, _) => refusal.code(),
        (None, None, _) => Code::ClientClosed,
        (None, Some(_), Some(e)) if matches!(e.esource(), ErrorSource::Downstream) => {
            Code::ClientClosed
        }
        (None, Some(_), Some(e)) => Refusal::from_upstream_error(e).code(),
        (None, Some(s), None) if s < 400 => Code::Ok,
        (None, Some(s), None) if s < 500 => Code::Upstream4xx,
        (None, Some(_), None) => Code::Upstream5xx,
    };
    (code, status)
}

/// What the request is billed. A stream that ended before its usage report (the client left
/// and the rest could not be read, or the provider broke off) is billed on an estimate of
/// what was streamed: one token per event out, the prompt at 4 bytes a token in.
fn billed(ctx: &RequestCtx, usage: Option<Usage>) -> (Option<Billed>, Option<TokensSource>) {
    let events = ctx.upstream.meter.events();
    match (usage, ctx.forward) {
        (Some(u), _) => (
            Some(Billed {
                input: u.input_tokens,
                output: u.output_tokens,
                cached: u.cached_input_tokens,
                cache_write: u.cache_write_tokens,
            }),
            Some(TokensSource::Reported),
        ),
        (None, Some(forward)) if events > 0 => {
            let billed = Billed {
                input: u64::try_from(forward.body_len / 4).unwrap_or(u64::MAX),
                output: events,
                ..Billed::default()
            };
            (Some(billed), Some(TokensSource::Estimated))
        }
        (None, _) => (None, None),
    }
}

/// How the request ended and what it is billed, read once from its context.
pub(super) fn outcome(session: &Session, error: Option<&Error>, ctx: &mut RequestCtx) -> Outcome {
    let (code, status) = code(session, error, ctx);
    let usage = ctx.upstream.meter.finish();
    let (billed, source) = billed(ctx, usage);
    let price = ctx
        .snapshot
        .as_deref()
        .zip(ctx.model.as_deref())
        .and_then(|(s, model)| s.prices.find(model));
    Outcome {
        code,
        status,
        usage,
        billed,
        source,
        cost: price.zip(billed).map(|(price, billed)| price.cost(&billed)),
    }
}

/// Charges the request's reservations with what it was billed; without a bill, a forwarded
/// request keeps its reservation (it may have been billed) and a refused or failed one gives
/// it back.
pub(super) fn settle(ctx: &mut RequestCtx, outcome: &Outcome) {
    let kept = ctx.forward.is_some() && may_have_been_billed(outcome.code, outcome.status);
    let tokens = outcome.billed.map(|b| b.input + b.output);
    ctx.admission.settle(
        tokens.or((!kept).then_some(0)),
        outcome.cost.or((!kept).then_some(0)),
    );
}

/// Whether a forwarded request that ended with `code` (and the response status, if one
/// started) may have been billed by the provider. A client that hung up, or a provider that
/// timed out or broke off mid-answer, may well have done the work: the reservation stands.
/// The provider's own error answers, and failures before any answer, are not billed.
fn may_have_been_billed(code: Code, status: Option<u16>) -> bool {
    match code {
        Code::Ok | Code::ClientClosed | Code::UpstreamTimeout => true,
        Code::UpstreamUnavailable => status.is_some_and(|s| s < 400),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_request_keeps_its_reservation_unless_the_provider_refused_it() {
        assert!(may_have_been_billed(Code::Ok, Some(200)));
        assert!(may_have_been_billed(Code::ClientClosed, None));
        assert!(may_have_been_billed(Code::ClientClosed, Some(200)));
        assert!(may_have_been_billed(Code::UpstreamTimeout, None));
        assert!(may_have_been_billed(Code::UpstreamUnavailable, Some(200)));
        assert!(!may_have_been_billed(Code::UpstreamUnavailable, None));
        assert!(!may_have_been_billed(Code::UpstreamUnavailable, Some(502)));
        assert!(!may_have_been_billed(Code::Upstream4xx, Some(400)));
        assert!(!may_have_been_billed(Code::Upstream5xx, Some(500)));
        assert!(!may_have_been_billed(Code::RateLimited, Some(429)));
    }
}
