//! What a request leaves behind, once, when it ends: its budget settled, its counts and
//! durations in the metrics, its audit event on the queue.

use std::sync::Arc;
use std::time::Instant;

use pingora::proxy::Session;
use pingora::{Error, ErrorSource};

use super::{Refusal, RequestCtx, WardenProxy};
use crate::audit::event::TokensSource;
use crate::audit::{AuditEvent, Directory, Tokens};
use crate::code::Code;
use crate::limits::counters::OVERFLOW_MODEL;
use crate::limits::pricing::Billed;

impl WardenProxy {
    /// Emits the request's metrics and audit event, once per request.
    ///
    /// A response that started but did not finish is not `ok`: `error` says who broke it (the
    /// client hanging up: `client_closed`; the provider failing mid-body: its upstream code).
    pub(super) fn record(&self, session: &Session, error: Option<&Error>, ctx: &mut RequestCtx) {
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
        let snapshot = ctx.snapshot.as_deref();
        let agent = snapshot.zip(ctx.agent).map(|(s, a)| &s.agents[a]);
        let provider = snapshot
            .zip(ctx.provider)
            .map_or("", |(s, p)| s.providers[p].name.as_str());
        let model = match (&ctx.model, snapshot, agent) {
            (Some(model), Some(snapshot), Some(agent)) => {
                if snapshot.names_model(agent, model) {
                    model.as_str()
                } else {
                    OVERFLOW_MODEL
                }
            }
            _ => "",
        };
        let usage = ctx.upstream.meter.finish();
        // A stream that ended before its usage report (the client left and the rest could not
        // be read, or the provider broke off) is billed on an estimate of what was streamed:
        // one token per event out, the prompt at 4 bytes a token in.
        let events = ctx.upstream.meter.events();
        let (billed, source) = match (usage, ctx.forward) {
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
                let input = u64::try_from(forward.body_len / 4).unwrap_or(u64::MAX);
                let billed = Billed {
                    input,
                    output: events,
                    ..Billed::default()
                };
                (Some(billed), Some(TokensSource::Estimated))
            }
            (None, _) => (None, None),
        };
        let price = snapshot
            .zip(ctx.model.as_deref())
            .and_then(|(s, model)| s.prices.find(model));
        let cost = price.zip(billed).map(|(price, billed)| price.cost(&billed));
        if let Some(agent) = agent {
            // What the provider reported (or the estimate of a stream cut short); without
            // either, a forwarded request keeps its reservation (it may have been billed) and a
            // refused or failed one gives it back.
            let kept = ctx.forward.is_some() && may_have_been_billed(code, status);
            let tokens = billed.map(|b| b.input + b.output);
            ctx.admission.settle(
                tokens.or((!kept).then_some(0)),
                cost.or((!kept).then_some(0)),
            );
            if let Some(cost) = cost {
                self.metrics.spent(&agent.id, cost);
            }
        }
        if matches!(
            code,
            Code::TokenBudgetExhausted | Code::SpendBudgetExhausted | Code::RequestExceedsBudget
        ) {
            if let Some(agent) = agent {
                self.metrics.budget_rejected(&agent.id, code);
            }
        }
        let counters = agent.map_or(&self.metrics.anonymous, |a| &a.limits.counters);
        counters.record(
            model,
            provider,
            code,
            usage.map(|u| (u.input_tokens, u.output_tokens)),
        );
        let now = Instant::now();
        let total = now.saturating_duration_since(ctx.started);
        self.metrics
            .request_duration(code)
            .observe(total.as_secs_f64());
        // The response has just ended (or failed): `logging` runs right after its last byte.
        let upstream = &ctx.upstream;
        let upstream_time = upstream
            .started
            .map(|started| now.saturating_duration_since(started));
        if let Some(upstream_time) = upstream_time {
            self.metrics
                .upstream_duration(provider)
                .observe(upstream_time.as_secs_f64());
        }
        self.metrics.overhead.observe(
            total
                .saturating_sub(upstream_time.unwrap_or_default())
                .as_secs_f64(),
        );
        let request = session.req_header();
        log::info!(
            target: crate::proxy::ACCESS_LOG_TARGET,
            request_id = ctx.request_id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or(""),
            agent = agent.map_or("", |a| a.id.as_str()),
            method = request.method.as_str(),
            path = truncated(request.uri.path(), MAX_AUDITED_PATH),
            model = truncated(ctx.model.as_deref().unwrap_or(""), MAX_AUDITED_MODEL),
            provider = provider,
            code = code.as_str(),
            status = status.unwrap_or(0),
            latency_ms = total.as_secs_f64() * 1000.0,
            input_tokens = billed.map_or(0, |b| b.input),
            output_tokens = billed.map_or(0, |b| b.output);
            "request"
        );
        if let Some(audit) = &self.audit {
            let millis = |from: Instant, to: Instant| {
                to.saturating_duration_since(from).as_secs_f64() * 1000.0
            };
            let credential = ctx.credential.take();
            let revocation =
                snapshot.and_then(|s| s.revocation(code, ctx.agent, credential.as_ref()));
            audit.emit(AuditEvent {
                arrived: ctx.arrived,
                request_id: ctx.request_id.clone(),
                client_request_id: ctx.client_request_id.take(),
                provider_request_id: upstream.provider_request_id.clone(),
                snapshot: ctx.snapshot.clone().map(|s| s as Arc<dyn Directory>),
                agent: ctx.agent,
                provider: ctx.provider,
                credential,
                method: request.method.clone(),
                path: capped(request.uri.path().to_string(), MAX_AUDITED_PATH),
                model: ctx.model.take().map(|m| capped(m, MAX_AUDITED_MODEL)),
                denied: ctx.refusal.is_some() && ctx.forward.is_none(),
                code,
                status: status.unwrap_or(0),
                latency_ms: millis(ctx.started, now),
                upstream_ms: upstream.started.map(|start| millis(start, now)),
                ttfb_ms: upstream.first_byte.map(|t| millis(ctx.started, t)),
                tokens: billed.map(|b| Tokens {
                    input: b.input,
                    output: b.output,
                    cached: (b.cached > 0).then_some(b.cached),
                }),
                tokens_source: source,
                cost_usd: cost.map(|micro| micro as f64 / 1_000_000.0),
                tunnel: None,
                action: ctx.action.take(),
                revocation,
            });
        }
    }
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

/// Longest request path and model name written to an audit event: a hostile agent cannot
/// make events huge.
const MAX_AUDITED_PATH: usize = 2048;
const MAX_AUDITED_MODEL: usize = 256;

/// `text` cut to at most `max` bytes on a character boundary, without copying.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text`, cut to at most `max` bytes (on a character boundary) and marked with `…` if cut.
fn capped(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
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
