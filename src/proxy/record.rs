//! What a request leaves behind, once, when it ends: its budgets settled ([`super::settle`]),
//! then its telemetry — counts and durations in the metrics, the access log line, the audit
//! event on the queue — and the one builder of decision events the tunnel uses too.

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use pingora::proxy::Session;
use pingora::Error;

use super::error::truncated;
use super::settle::{self, Outcome};
use super::{RequestCtx, WardenProxy};
use crate::audit::{AuditEvent, Directory, Tokens};
use crate::code::Code;
use crate::config::Snapshot;
use crate::identity::Credential;
use crate::limits::counters::OVERFLOW_MODEL;
use crate::policy::Agent;
use crate::telemetry::RequestSpan;

/// Durations of one request, taken once when it ends (`logging` runs right after the last
/// byte of the response, or its failure).
struct Timing {
    now: Instant,
    total: std::time::Duration,
    upstream: Option<std::time::Duration>,
}

impl WardenProxy {
    /// Settles the request and emits its metrics, access log line and audit event.
    pub(super) fn record(&self, session: &Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        let outcome = settle::outcome(session, error, ctx);
        settle::settle(ctx, &outcome);
        let snapshot = ctx.snapshot.as_deref();
        let agent = snapshot.zip(ctx.agent).map(|(s, a)| &s.agents[a]);
        let provider = snapshot
            .zip(ctx.provider)
            .map_or("", |(s, p)| s.providers[p].name.as_str());
        let now = self.clock.instant();
        let timing = Timing {
            now,
            total: now.saturating_duration_since(ctx.started),
            upstream: ctx
                .upstream
                .started
                .map(|s| now.saturating_duration_since(s)),
        };
        self.count(ctx, agent, provider, &outcome, &timing);
        access_log(session, ctx, agent, provider, &outcome, &timing);
        let trace = ctx.span.as_ref().map(RequestSpan::ids);
        super::trace::end(session, ctx, &outcome);
        if let Some(audit) = &self.audit {
            audit.emit(AuditEvent {
                trace,
                ..request_event(session, ctx, &outcome, &timing)
            });
        }
    }

    /// The request in the metrics: spend, budget refusals, the agent's counters, durations.
    fn count(
        &self,
        ctx: &RequestCtx,
        agent: Option<&Agent>,
        provider: &str,
        outcome: &Outcome,
        timing: &Timing,
    ) {
        let code = outcome.code;
        if let (Some(agent), Some(cost)) = (agent, outcome.cost) {
            self.metrics.spent(&agent.id, cost);
        }
        if matches!(
            code,
            Code::TokenBudgetExhausted | Code::SpendBudgetExhausted | Code::RequestExceedsBudget
        ) {
            if let Some(agent) = agent {
                self.metrics.budget_rejected(&agent.id, code);
            }
        }
        let model = match (&ctx.model, ctx.snapshot.as_deref(), agent) {
            (Some(model), Some(snapshot), Some(agent)) if snapshot.names_model(agent, model) => {
                model.as_str()
            }
            (Some(_), Some(_), Some(_)) => OVERFLOW_MODEL,
            _ => "",
        };
        if let (Some(agent), Some(call)) = (agent, &ctx.mcp) {
            if let Some((_, entry)) = &call.tool {
                self.metrics.mcp_call(&agent.id, &call.server, entry, code);
            }
        }
        let counters = agent.map_or(&self.metrics.anonymous, |a| &a.limits.counters);
        let tokens = outcome.usage.map(|u| (u.input_tokens, u.output_tokens));
        counters.record(model, provider, code, tokens);
        let metrics = &self.metrics;
        metrics
            .request_duration(code)
            .observe(timing.total.as_secs_f64());
        if let Some(upstream) = timing.upstream {
            metrics
                .upstream_duration(provider)
                .observe(upstream.as_secs_f64());
        }
        let overhead = timing
            .total
            .saturating_sub(timing.upstream.unwrap_or_default());
        metrics.overhead.observe(overhead.as_secs_f64());
    }
}

/// The request's access log line.
fn access_log(
    session: &Session,
    ctx: &RequestCtx,
    agent: Option<&Agent>,
    provider: &str,
    outcome: &Outcome,
    timing: &Timing,
) {
    let request = session.req_header();
    log::info!(
        target: crate::proxy::ACCESS_LOG_TARGET,
        request_id = ctx.request_id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or(""),
        agent = agent.map_or("", |a| a.id.as_str()),
        method = request.method.as_str(),
        path = truncated(request.uri.path(), MAX_AUDITED_PATH),
        model = truncated(ctx.model.as_deref().unwrap_or(""), MAX_AUDITED_MODEL),
        provider = provider,
        code = outcome.code.as_str(),
        status = outcome.status.unwrap_or(0),
        latency_ms = timing.total.as_secs_f64() * 1000.0,
        input_tokens = outcome.billed.map_or(0, |b| b.input),
        output_tokens = outcome.billed.map_or(0, |b| b.output);
        "request"
    );
}

/// The request's audit event (taking from the context what it no longer needs).
fn request_event(
    session: &Session,
    ctx: &mut RequestCtx,
    outcome: &Outcome,
    timing: &Timing,
) -> AuditEvent {
    let millis =
        |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1000.0;
    let request = session.req_header();
    let upstream = &ctx.upstream;
    let decision = Decision {
        arrived: ctx.arrived,
        snapshot: ctx.snapshot.as_ref(),
        agent: ctx.agent,
        credential: ctx.credential.take(),
        method: request.method.clone(),
        path: capped(request.uri.path().to_string(), MAX_AUDITED_PATH),
        code: outcome.code,
        status: outcome.status.unwrap_or(0),
        latency_ms: millis(ctx.started, timing.now),
    };
    AuditEvent {
        request_id: ctx.request_id.clone(),
        client_request_id: ctx.client_request_id.take(),
        provider_request_id: upstream.provider_request_id.clone(),
        provider: ctx.provider,
        model: ctx.model.take().map(|m| capped(m, MAX_AUDITED_MODEL)),
        denied: ctx.refusal.is_some() && ctx.forward.is_none(),
        upstream_ms: upstream.started.map(|start| millis(start, timing.now)),
        ttfb_ms: upstream.first_byte.map(|t| millis(ctx.started, t)),
        tokens: outcome.billed.map(|b| Tokens {
            input: b.input,
            output: b.output,
            cached: (b.cached > 0).then_some(b.cached),
        }),
        tokens_source: outcome.source,
        cost_usd: outcome.cost.map(|micro| micro as f64 / 1_000_000.0),
        action: ctx.action.take(),
        mcp: ctx.mcp.take().map(super::mcp::McpCall::into_audit),
        user: ctx.user.take(),
        translation: ctx.translation.as_ref().map(|t| t.direction().name()),
        ..decision.event()
    }
}

/// What every decision's audit event says, requests and tunnels alike.
pub struct Decision<'a> {
    /// When the request (or CONNECT) arrived: the record's `ts`.
    pub arrived: Timestamp,
    /// The policy it was decided under (names the agent and credential in the record).
    pub snapshot: Option<&'a Arc<Snapshot>>,
    /// The agent, by index into the snapshot, when identified.
    pub agent: Option<usize>,
    /// The credential presented (kind and id, never the secret).
    pub credential: Option<Credential>,
    pub method: http::Method,
    /// The request path, or a tunnel's `host:port`.
    pub path: String,
    /// How it ended.
    pub code: Code,
    /// The status sent (0 when nothing was).
    pub status: u16,
    pub latency_ms: f64,
}

impl Decision<'_> {
    /// The event, refused when `code` is not `ok`, with the revocation that refused it if one
    /// did; the fields only a request has (ids, model, tokens) or only a tunnel has are unset.
    pub fn event(self) -> AuditEvent {
        let revocation = self.snapshot.and_then(|s| {
            let now = self.arrived.as_second();
            s.revocation(self.code, self.agent, self.credential.as_ref(), now)
        });
        AuditEvent {
            arrived: self.arrived,
            request_id: None,
            client_request_id: None,
            provider_request_id: None,
            snapshot: self.snapshot.map(|s| Arc::clone(s) as Arc<dyn Directory>),
            agent: self.agent,
            provider: None,
            credential: self.credential,
            method: self.method,
            path: self.path,
            model: None,
            denied: self.code != Code::Ok,
            code: self.code,
            status: self.status,
            latency_ms: self.latency_ms,
            upstream_ms: None,
            ttfb_ms: None,
            tokens: None,
            tokens_source: None,
            cost_usd: None,
            tunnel: None,
            action: None,
            revocation,
            mcp: None,
            user: None,
            translation: None,
            trace: None,
        }
    }
}

/// Longest request path and model name written to an audit event: a hostile agent cannot
/// make events huge.
const MAX_AUDITED_PATH: usize = 2048;
const MAX_AUDITED_MODEL: usize = 256;

/// `text`, cut to at most `max` bytes (on a character boundary) and marked with `…` if cut.
fn capped(mut text: String, max: usize) -> String {
    if text.len() > max {
        text.truncate(truncated(&text, max).len());
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("héllo", 2), "h");
        assert_eq!(capped("héllo".into(), 3), "hé…");
        assert_eq!(capped("short".into(), 10), "short");
    }

    #[test]
    fn a_decision_is_denied_unless_ok() {
        let decision = |code| Decision {
            arrived: Timestamp::UNIX_EPOCH,
            snapshot: None,
            agent: None,
            credential: None,
            method: http::Method::CONNECT,
            path: "api.example.com:443".into(),
            code,
            status: 200,
            latency_ms: 1.0,
        };
        assert!(!decision(Code::Ok).event().denied);
        let refused = decision(Code::DestinationNotAllowed).event();
        assert!(refused.denied && refused.tunnel.is_none() && refused.revocation.is_none());
    }
}
