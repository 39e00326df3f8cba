//! `/svc/<name>/…`: an agent's call to a non-LLM API (`services:`). Warden checks the service,
//! method and path against the agent's `services:` entry (403 `destination_not_allowed`), the
//! agent's request limits (concurrency, rate) and the grant's daily count (429 `rate_limited`,
//! `Retry-After` at the day's end), then forwards the request with the service's credential in
//! place of the agent's. The body is streamed as it arrives, never read: services take uploads
//! of any size. `TRACE` and `CONNECT` are never forwarded, method-override headers are
//! removed, and a `_method` query parameter must name a granted method. Only a body bound by a message signature's `Content-Digest` is read first
//! (within `max_body_bytes`), to check it is the body signed.

use http::Method;
use pingora::proxy::Session;

use super::ctx::ServiceCall;
use super::error::shown;
use super::{body, Forward, Refusal, RequestCtx};
use crate::config::Snapshot;
use crate::identity::Credential;
use crate::limits::actions::Charge;
use crate::policy::Agent;
use crate::providers::Serves;

/// Where service calls start.
pub const PREFIX: &str = "/svc/";

/// Where a service call goes: the service's name, the path on it, and how much of the
/// request's path is Warden's (stripped before forwarding).
struct Addressed<'a> {
    name: &'a str,
    path: &'a str,
    prefix_len: usize,
}

/// Splits `path` into service and path on it: under [`PREFIX`] by name, or (`tunnelled`) any
/// path under the base path of the named service whose host a CONNECT reached.
fn address<'a>(
    snapshot: &'a Snapshot,
    path: &'a str,
    tunnelled: Option<&'a str>,
) -> Result<Addressed<'a>, Refusal> {
    let Some(name) = tunnelled else {
        let rest = path.strip_prefix(PREFIX).unwrap_or_default();
        let (name, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let prefix_len = PREFIX.len() + name.len();
        return Ok(Addressed {
            name,
            path,
            prefix_len,
        });
    };
    let base = snapshot
        .providers
        .iter()
        .find(|p| p.serves == Serves::Service && p.name == name)
        .map_or("", |p| p.base_path());
    let rest = path
        .strip_prefix(base)
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .ok_or_else(|| {
            Refusal::DestinationNotAllowed(format!(
                "{} is outside service `{name}`'s base path",
                shown(path)
            ))
        })?;
    Ok(Addressed {
        name,
        path: if rest.is_empty() { "/" } else { rest },
        prefix_len: base.len(),
    })
}

/// Admits `method path` for `agent`, taking its request limits and counting the call against
/// the day.
fn admit(
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    agent: &Agent,
    method: &Method,
    path: &str,
    query: Option<&str>,
    tunnelled: Option<&str>,
) -> Result<ServiceCall, Refusal> {
    if NEVER_FORWARDED.contains(method) {
        return Err(Refusal::DestinationNotAllowed(format!(
            "{method} is never forwarded to a service"
        )));
    }
    let Addressed {
        name,
        path: service_path,
        prefix_len,
    } = address(snapshot, path, tunnelled)?;
    let service = snapshot
        .providers
        .iter()
        .position(|p| p.serves == Serves::Service && p.name == name)
        .ok_or_else(|| {
            Refusal::DestinationNotAllowed(format!("there is no service {}", shown(name)))
        })?;
    let grant = agent.services.get(name).ok_or_else(|| {
        Refusal::DestinationNotAllowed(format!(
            "this agent may not call service {} (not in its `services`)",
            shown(name)
        ))
    })?;
    let delegated = ctx.credential.as_ref().and_then(Credential::delegation);
    if delegated.is_some_and(|d| !d.allows_service(name)) {
        return Err(Refusal::DestinationNotAllowed(format!(
            "this credential may not call service {} (not in its delegated scope)",
            shown(name)
        )));
    }
    if !grant.allows(method, service_path) || !method_overrides_allowed(grant, query, service_path)
    {
        return Err(Refusal::DestinationNotAllowed(format!(
            "this agent may not call {method} {} on service {} (not in its grant)",
            shown(service_path),
            shown(name)
        )));
    }
    ctx.admission.take_request_limits(agent)?;
    if let Some(per_day) = grant.requests_per_day {
        count_call(snapshot, agent, name, per_day, ctx.arrived.as_second())?;
    }
    Ok(ServiceCall {
        service,
        prefix_len,
    })
}

/// Counts the call against the grant's `requests_per_day` for the service `name`.
fn count_call(
    snapshot: &Snapshot,
    agent: &Agent,
    name: &str,
    per_day: u32,
    now: i64,
) -> Result<(), Refusal> {
    let charge = Charge {
        sums: &[],
        counts: &[(name, per_day)],
        micro_usd: 0,
        micro_usd_per_day: None,
    };
    let day = agent
        .limits
        .service_calls
        .charge(charge, true, now, &snapshot.days);
    if day.fleet_unavailable {
        return Err(Refusal::FleetUnavailable);
    }
    if day.over_count {
        let wait = u64::try_from(day.resets_in).unwrap_or(1).max(1);
        return Err(Refusal::RateLimited {
            retry_after: std::time::Duration::from_secs(wait),
            limit: format!("this agent's `requests_per_day` ({per_day}) on service `{name}`"),
        });
    }
    Ok(())
}

/// Methods never sent to a service, whatever its grant: `TRACE` makes a server echo the
/// request (the service's credential included) back to the agent; `CONNECT` is a tunnel.
const NEVER_FORWARDED: &[Method] = &[Method::TRACE, Method::CONNECT];

/// Whether every method a `_method` query parameter asks the server to act as (Rails, Laravel,
/// Express' method-override) is granted too. Override headers are removed before forwarding.
fn method_overrides_allowed(
    grant: &crate::policy::services::ServiceGrant,
    query: Option<&str>,
    path: &str,
) -> bool {
    let Some(query) = query else { return true };
    query.split('&').all(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !name.eq_ignore_ascii_case("_method") {
            return true;
        }
        match Method::from_bytes(value.to_ascii_uppercase().as_bytes()) {
            Ok(m) => !NEVER_FORWARDED.contains(&m) && grant.allows(&m, path),
            Err(_) => false,
        }
    })
}

/// Admits the service call in `session` for `agent` and readies it for forwarding. Its body is
/// then streamed by Pingora's own phases (`None`), or, when a signature binds it, read and
/// checked here and returned for Warden to forward.
pub async fn begin(
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    agent: &Agent,
    tunnelled: Option<&str>,
) -> Result<Option<bytes::Bytes>, Refusal> {
    let request = session.req_header();
    let (method, path) = (request.method.clone(), request.uri.path().to_owned());
    let query = request.uri.query().map(str::to_owned);
    let call = admit(
        ctx,
        snapshot,
        agent,
        &method,
        &path,
        query.as_deref(),
        tunnelled,
    )?;
    ctx.provider = Some(call.service);
    ctx.service = Some(call);
    if let Some(why) = snapshot.providers[call.service].unusable() {
        return Err(Refusal::UpstreamUnavailable(why));
    }
    if body::is_signed(ctx.credential.as_ref(), session.req_header()) {
        let body = body::read(session, snapshot.server.max_body_bytes).await?;
        body::check_signed(ctx.credential.as_ref(), session.req_header(), &body)?;
        ctx.forward = Some(Forward {
            body_len: body.len(),
            whole: true,
            ..Forward::default()
        });
        return Ok(Some(body));
    }
    body::answer_continue(session).await?;
    ctx.forward = Some(Forward::default());
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{compile, source, Environment};
    use crate::limits::LiveState;

    fn snapshot() -> Snapshot {
        let text = "version: 1
services:
  payments: {base_url: 'http://127.0.0.1:9/api', api_key_env: SVC_KEY}
agents:
  a:
    services:
      payments: {methods: [GET], paths: ['/v1/*']}
";
        let live = LiveState::default();
        let sources = source::from_text("p.yaml", text);
        compile(&sources, &Environment::offline(&live))
            .unwrap()
            .snapshot
    }

    fn addressed(
        snapshot: &Snapshot,
        path: &str,
        tunnelled: Option<&str>,
    ) -> (String, String, usize) {
        let a = address(snapshot, path, tunnelled).unwrap();
        (a.name.to_owned(), a.path.to_owned(), a.prefix_len)
    }

    #[test]
    fn a_call_is_addressed_by_prefix_or_by_the_tunnels_service() {
        let s = snapshot();
        let prefix = "/svc/payments".len();
        assert_eq!(
            addressed(&s, "/svc/payments/v1/x", None),
            ("payments".into(), "/v1/x".into(), prefix)
        );
        assert_eq!(
            addressed(&s, "/svc/payments", None),
            ("payments".into(), "/".into(), prefix)
        );
        assert_eq!(
            addressed(&s, "/api/v1/x", Some("payments")),
            ("payments".into(), "/v1/x".into(), 4)
        );
        assert_eq!(addressed(&s, "/api", Some("payments")).1, "/");
        assert!(matches!(
            address(&s, "/apix/v1", Some("payments")),
            Err(Refusal::DestinationNotAllowed(_))
        ));
    }

    #[test]
    fn a_method_override_must_name_a_granted_method() {
        let s = snapshot();
        let grant = &s.agents[0].services["payments"];
        assert!(method_overrides_allowed(grant, None, "/v1/x"));
        assert!(method_overrides_allowed(
            grant,
            Some("a=1&_method=get"),
            "/v1/x"
        ));
        assert!(!method_overrides_allowed(
            grant,
            Some("_method=POST"),
            "/v1/x"
        ));
        assert!(!method_overrides_allowed(
            grant,
            Some("_METHOD=trace"),
            "/v1/x"
        ));
        assert!(!method_overrides_allowed(
            grant,
            Some("_method=%47ET"),
            "/v1/x"
        ));
    }
}
