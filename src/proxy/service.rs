//! `/svc/<name>/…`: an agent's call to a non-LLM API (`services:`). Warden checks the service,
//! method and path against the agent's `services:` entry (403 `destination_not_allowed`) and
//! its daily count (429 `rate_limited`, `Retry-After` at the day's end), then forwards the
//! request with the service's credential in place of the agent's. The body is streamed as it
//! arrives, never read: services take uploads of any size.

use http::Method;
use jiff::Timestamp;
use pingora::proxy::Session;

use super::{body, Forward, Refusal, RequestCtx};
use crate::config::Snapshot;
use crate::limits::actions::Charge;
use crate::policy::Agent;

/// Where service calls start.
pub const PREFIX: &str = "/svc/";

/// An admitted service call: the service (an index into the snapshot's providers) and how
/// much of the path is Warden's (`/svc/<name>`), stripped before forwarding.
#[derive(Debug, Clone, Copy)]
pub struct ServiceCall {
    pub service: usize,
    pub prefix_len: usize,
}

/// Admits `method path` for `agent`, counting it against the day: a path under [`PREFIX`], or
/// (`tunnelled`) any path of the named service's host reached through an intercepted CONNECT.
pub fn admit(
    snapshot: &Snapshot,
    agent: &Agent,
    method: &Method,
    path: &str,
    tunnelled: Option<&str>,
    now: Timestamp,
) -> Result<ServiceCall, Refusal> {
    let (name, service_path, prefix_len) = match tunnelled {
        Some(name) => {
            let base = snapshot
                .providers
                .iter()
                .find(|p| p.service && p.name == name)
                .map_or("", |p| p.base_path());
            let rest = path
                .strip_prefix(base)
                .filter(|r| r.is_empty() || r.starts_with('/'));
            let rest = rest.ok_or(Refusal::DestinationNotAllowed)?;
            (name, if rest.is_empty() { "/" } else { rest }, base.len())
        }
        None => {
            let rest = path.strip_prefix(PREFIX).unwrap_or_default();
            let (name, service_path) = match rest.find('/') {
                Some(slash) => (&rest[..slash], &rest[slash..]),
                None => (rest, "/"),
            };
            (name, service_path, PREFIX.len() + name.len())
        }
    };
    let service = snapshot
        .providers
        .iter()
        .position(|p| p.service && p.name == name)
        .ok_or(Refusal::DestinationNotAllowed)?;
    let grant = agent
        .services
        .get(name)
        .ok_or(Refusal::DestinationNotAllowed)?;
    if !grant.allows(method, service_path) {
        return Err(Refusal::DestinationNotAllowed);
    }
    if let Some(per_day) = grant.requests_per_day {
        let day = agent.limits.service_calls.charge(
            Charge {
                action: name,
                micro_usd: 0,
                per_day: Some(per_day),
                micro_usd_per_day: None,
            },
            true,
            now.as_second(),
            &snapshot.days,
        );
        if day.fleet_unavailable {
            return Err(Refusal::FleetUnavailable);
        }
        if day.over_count {
            let wait = u64::try_from(day.resets_in).unwrap_or(1).max(1);
            return Err(Refusal::RateLimited {
                retry_after: std::time::Duration::from_secs(wait),
            });
        }
    }
    Ok(ServiceCall {
        service,
        prefix_len,
    })
}

/// Admits the service call in `session` for `agent` and readies it for forwarding: the body is
/// then streamed by Pingora's own phases.
pub async fn begin(
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    agent: &Agent,
    tunnelled: Option<&str>,
) -> Result<(), Refusal> {
    let request = session.req_header();
    let path = request.uri.path();
    let call = admit(
        snapshot,
        agent,
        &request.method,
        path,
        tunnelled,
        ctx.arrived,
    )?;
    ctx.provider = Some(call.service);
    ctx.service = Some(call);
    if let Some(why) = snapshot.providers[call.service].unusable() {
        return Err(Refusal::UpstreamUnavailable(why));
    }
    body::answer_continue(session).await?;
    ctx.forward = Some(Forward::default());
    Ok(())
}
