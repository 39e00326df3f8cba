//! The Pingora `ProxyHttp` implementation: one request, top to bottom.
//!
//! A request from an agent is the *main* request. `request_filter` loads the policy snapshot
//! once, identifies the agent, authorizes the path, reads the whole body to learn the model,
//! authorizes the model, routes it, and takes the agent's limits — each step one call into
//! `identity`, `policy` or `limits`. A refusal is answered right there.
//!
//! An admitted request is forwarded through a Pingora *subrequest* fed with the body Warden
//! already read (stock Pingora can only replay pre-read bodies up to 64 KiB; see
//! PINGORA_NOTES.md). The subrequest runs through this same impl with the [`Forward`] plan in
//! its context: it skips every decision, picks the provider peer, rewrites headers, passes the
//! response through chunk by chunk while metering usage, and records an [`Outcome`]. The main
//! request then emits metrics once.

pub mod body;
pub mod ctx;
pub mod error;
pub mod headers;
pub mod models;
pub mod request;
pub mod usage;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::subrequest::pipe::{pipe_subrequest, InputBody, InputBodyType};
use pingora::proxy::subrequest::{BodyMode, Ctx as SubrequestCtx};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::admin::Metrics;
use crate::audit::{AuditEvent, Auditor, Tokens};
use crate::config::snapshot::{Upstream, UpstreamAuth};
use crate::config::Snapshot;
use crate::identity::api_key::KeyRejection;
use crate::limits::RateDecision;
pub use ctx::{Forward, Outcome, RequestCtx};
pub use error::Refusal;
use usage::UsageMeter;

/// Warden's proxy: shared by every request, holds only handles to shared state.
pub struct WardenProxy {
    /// The live policy; `None` until a first valid policy is loaded.
    pub policy: Arc<ArcSwapOption<Snapshot>>,
    pub metrics: Arc<Metrics>,
    /// Unix socket of the built-in mock provider.
    pub mock_socket: String,
    /// Where audit events go; `None` when the policy has no `audit:`.
    pub audit: Option<Arc<Auditor>>,
}

/// What admission decided for a request that is not refused.
enum Admitted {
    /// Warden answers itself (`GET /v1/models`).
    Answer(Bytes),
    /// Forward this body to the provider.
    Forward(Bytes),
}

#[async_trait]
impl ProxyHttp for WardenProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    /// Only the main request spawns (its one upstream subrequest).
    fn allow_spawning_subrequest(&self, session: &Session, _ctx: &RequestCtx) -> bool {
        session.subrequest_ctx.is_none()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let Some(forward) = subrequest_plan(session) {
            ctx.is_subrequest = true;
            ctx.forward = Some(forward);
            return Ok(false);
        }
        match self.admit(session, ctx).await {
            Ok(Admitted::Answer(body)) => {
                answer_json(session, ctx, body).await?;
                Ok(true)
            }
            Ok(Admitted::Forward(body)) => self.forward(session, ctx, body).await,
            Err(refusal) => {
                let result = error::respond(
                    session,
                    &refusal,
                    ctx.request_id.as_ref(),
                    ctx.rate.as_ref(),
                )
                .await;
                ctx.refusal = Some(refusal);
                result.map(|()| true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let forward = plan(ctx)?;
        let settings = &forward.snapshot.server;
        let provider = &forward.snapshot.providers[forward.provider];
        let mut peer = match &provider.upstream {
            Upstream::Http(up) => match up.addr {
                Some(addr) => HttpPeer::new(addr, up.tls, up.host.clone()),
                None => {
                    return Err(Error::explain(
                        ErrorType::ConnectNoRoute,
                        "provider host is not resolved",
                    ))
                }
            },
            Upstream::Mock => HttpPeer::new_uds(&self.mock_socket, false, String::new())?,
        };
        peer.options.connection_timeout = Some(settings.connect_timeout);
        peer.options.total_connection_timeout = Some(settings.connect_timeout);
        peer.options.read_timeout = Some(settings.read_timeout);
        peer.options.write_timeout = Some(settings.read_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let forward = plan(ctx)?;
        let provider = &forward.snapshot.providers[forward.provider];
        let mock_authority = http::HeaderValue::from_static("warden-mock");
        let authority = match &provider.upstream {
            Upstream::Http(up) => &up.authority,
            Upstream::Mock => &mock_authority,
        };
        headers::rewrite_upstream(
            upstream_request,
            &headers::UpstreamIdentity {
                path_and_query: &forward.upstream_path,
                authority,
                auth: &provider.auth,
                agent_id: &forward.snapshot.agents[forward.agent].id_header,
                request_id: &forward.request_id,
                body_len: forward.body_len,
            },
        )
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(forward) = ctx.forward.clone().filter(|_| ctx.is_subrequest) else {
            return Ok(());
        };
        ctx.upstream_status = Some(response.status.as_u16());
        ctx.upstream_mark = Some(Instant::now());
        if response.status.is_success() {
            let content_type = response
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes());
            ctx.meter = UsageMeter::for_content_type(content_type);
        }
        response.insert_header(headers::REQUEST_ID, forward.request_id.clone())?;
        if let Some(rate) = &forward.rate {
            headers::insert_rate_limit(response, rate)?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(chunk) = body {
            ctx.meter.feed(chunk);
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        if ctx.is_subrequest {
            // The main request writes the error response: it alone knows whether anything was sent.
            let refusal = Refusal::from_upstream_error(e);
            let error_code = refusal.status().as_u16();
            ctx.upstream_failure = Some(refusal);
            return FailToProxy {
                error_code,
                can_reuse_downstream: false,
            };
        }
        let error_code = session.response_written().map_or(0, |r| r.status.as_u16());
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.is_subrequest {
            if let Some(forward) = &ctx.forward {
                let outcome = Outcome {
                    status: ctx.upstream_status,
                    usage: ctx.meter.finish(),
                    failure: ctx.upstream_failure.take(),
                    first_byte: ctx.upstream_mark,
                };
                let _ = forward.outcome.set(outcome);
            }
            return;
        }
        self.record(session, ctx);
    }
}

impl WardenProxy {
    /// Identify → authorize → read body → authorize model → route → limit.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Admitted, Refusal> {
        ctx.request_id = Some(headers::request_id(session.req_header()));
        let snapshot = self
            .policy
            .load_full()
            .ok_or_else(|| Refusal::UpstreamUnavailable("no valid policy is loaded".into()))?;
        ctx.snapshot = Some(Arc::clone(&snapshot));

        let now = ctx.arrived;
        let key = {
            let presented = crate::identity::presented(&session.req_header().headers)
                .ok_or(Refusal::MissingCredentials)?;
            snapshot
                .keys
                .find(presented.secret)
                .ok_or(Refusal::InvalidCredentials)?
        };
        ctx.agent = Some(key.agent);
        ctx.key = Some(key.hash);
        key.check(now).map_err(|e| match e {
            KeyRejection::Revoked => Refusal::CredentialRevoked,
            KeyRejection::Expired => Refusal::ExpiredCredentials,
        })?;
        let agent = &snapshot.agents[key.agent];
        crate::policy::check_agent(agent, now)?;

        let uri = &session.req_header().uri;
        let path = uri.path();
        request::check_path(path)?;
        crate::policy::check_endpoint(agent, path)?;
        if session.req_header().method == http::Method::GET {
            return models::answer(&snapshot, agent, path).map(Admitted::Answer);
        }
        let query = uri.query().map(str::to_owned);
        let path = path.to_owned();

        let body = body::read(session, snapshot.server.max_body_bytes).await?;
        let fields = request::body_fields(&body)?;
        ctx.model = Some(fields.model.clone().into_owned());
        crate::policy::check_model(agent, &fields.model)?;
        let provider_index = snapshot
            .providers
            .iter()
            .position(|p| p.models.matches(&fields.model))
            .ok_or(Refusal::ModelNotFound)?;
        ctx.provider = Some(provider_index);
        let provider = &snapshot.providers[provider_index];
        usable(provider)?;

        if let Some(rate) = &agent.limits.requests_per_minute {
            let decision = rate.check();
            ctx.rate = Some(decision);
            if let RateDecision::Limited { retry_after, .. } = decision {
                return Err(Refusal::RateLimited { retry_after });
            }
        }
        if let Some((max, in_flight)) = &agent.limits.max_concurrent {
            ctx.in_flight = Some(
                in_flight
                    .try_acquire(*max)
                    .ok_or(Refusal::ConcurrencyLimited)?,
            );
        }

        let base_path = match &provider.upstream {
            Upstream::Http(up) => up.base_path.as_str(),
            Upstream::Mock => "/v1",
        };
        let forward = Forward {
            snapshot: Arc::clone(&snapshot),
            agent: key.agent,
            provider: provider_index,
            request_id: ctx
                .request_id
                .clone()
                .unwrap_or_else(|| http::HeaderValue::from_static("unknown")),
            upstream_path: request::upstream_path(base_path, &path, query.as_deref()),
            body_len: body.len(),
            rate: ctx.rate,
            outcome: OnceLock::new(),
        };
        ctx.forward = Some(Arc::new(forward));
        Ok(Admitted::Forward(body))
    }

    /// Sends the admitted request through a subrequest fed with the body already read.
    async fn forward(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        body: Bytes,
    ) -> Result<bool> {
        let forward = plan(ctx)?;
        let Some(spawner) = session.subrequest_spawner.as_ref() else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "subrequests are not enabled",
            ));
        };
        let sub_ctx = SubrequestCtx::builder()
            .body_mode(BodyMode::ExpectBody)
            .user_ctx(Box::new(Arc::clone(&forward)))
            .build();
        let (prepared, handle) = spawner.create_subrequest(session.as_ref(), sub_ctx);
        ctx.upstream_mark = Some(Instant::now());
        let piped = pipe_subrequest(
            session,
            prepared,
            handle,
            |task| Ok(Some(task)),
            InputBodyType::Preset(InputBody::Bytes(vec![body])),
        )
        .await;
        let failure = match piped {
            Ok(mut state) => {
                if let Some(join) = state.join_handle.take() {
                    if let Err(e) = join.await {
                        log::error!("upstream subrequest task failed: {e}");
                    }
                }
                forward.outcome.get().and_then(|o| o.failure.clone())
            }
            Err(e) => {
                if session.response_written().is_some() {
                    return Err(e.error);
                }
                Some(Refusal::from_upstream_error(&e.error))
            }
        };
        if session.response_written().is_none() {
            let refusal = failure.unwrap_or_else(|| {
                Refusal::UpstreamUnavailable("provider closed the connection".into())
            });
            error::respond(
                session,
                &refusal,
                Some(&forward.request_id),
                forward.rate.as_ref(),
            )
            .await?;
            ctx.refusal = Some(refusal);
        }
        Ok(true)
    }

    /// Emits the request's metrics, once, from the main request.
    fn record(&self, session: &Session, ctx: &mut RequestCtx) {
        let status = session.response_written().map(|r| r.status.as_u16());
        let code = match (&ctx.refusal, status) {
            (Some(refusal), _) => refusal.code(),
            (None, Some(s)) if s < 400 => "ok",
            (None, Some(s)) if s < 500 => "upstream_4xx",
            (None, Some(_)) => "upstream_5xx",
            (None, None) => "client_closed",
        };
        let snapshot = ctx.snapshot.as_deref();
        let agent = snapshot.zip(ctx.agent).map(|(s, a)| &s.agents[a]);
        let provider = snapshot
            .zip(ctx.provider)
            .map_or("", |(s, p)| s.providers[p].name.as_str());
        let model = match (&ctx.model, agent) {
            (Some(model), Some(agent)) if agent.models.matches_literally(model) || code == "ok" => {
                model.as_str()
            }
            _ => "",
        };
        let agent = agent.map_or("", |a| a.id.as_str());
        self.metrics
            .requests
            .with_label_values(&[agent, model, provider, code])
            .inc();
        let usage = ctx
            .forward
            .as_ref()
            .and_then(|f| f.outcome.get())
            .and_then(|o| o.usage);
        if let Some(usage) = usage {
            let tokens = &self.metrics.tokens;
            tokens
                .with_label_values(&[agent, model, "input"])
                .inc_by(usage.input_tokens);
            tokens
                .with_label_values(&[agent, model, "output"])
                .inc_by(usage.output_tokens);
        }
        self.metrics
            .request_duration
            .with_label_values(&[code])
            .observe(ctx.started.elapsed().as_secs_f64());
        if let Some(audit) = &self.audit {
            let request = session.req_header();
            let outcome = ctx.forward.as_ref().and_then(|f| f.outcome.get());
            let now = Instant::now();
            let millis = |from: Instant, to: Instant| {
                to.saturating_duration_since(from).as_secs_f64() * 1000.0
            };
            audit.emit(AuditEvent {
                arrived: ctx.arrived,
                request_id: ctx.request_id.clone(),
                snapshot: ctx.snapshot.clone(),
                agent: ctx.agent,
                provider: ctx.provider,
                key: ctx.key,
                method: request.method.clone(),
                path: capped(request.uri.path().to_string(), MAX_AUDITED_PATH),
                model: ctx.model.take().map(|m| capped(m, MAX_AUDITED_MODEL)),
                denied: ctx.refusal.is_some() && ctx.forward.is_none(),
                code,
                status: status.unwrap_or(0),
                latency_ms: millis(ctx.started, now),
                upstream_ms: ctx.upstream_mark.map(|start| millis(start, now)),
                ttfb_ms: outcome
                    .and_then(|o| o.first_byte)
                    .map(|t| millis(ctx.started, t)),
                tokens: usage.map(|u| Tokens {
                    input: u.input_tokens,
                    output: u.output_tokens,
                }),
            });
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
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The forwarding plan handed to a subrequest, if this session is one.
fn subrequest_plan(session: &Session) -> Option<Arc<Forward>> {
    let user_ctx = session.subrequest_ctx.as_ref()?.user_ctx()?;
    user_ctx.downcast_ref::<Arc<Forward>>().cloned()
}

fn plan(ctx: &RequestCtx) -> Result<Arc<Forward>> {
    ctx.forward
        .clone()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no forwarding plan"))
}

/// Refuses a routed provider that cannot be used (unresolved host, missing key).
fn usable(provider: &crate::config::snapshot::Provider) -> Result<(), Refusal> {
    if let UpstreamAuth::Missing(origin) = &provider.auth {
        return Err(Refusal::UpstreamUnavailable(format!(
            "provider `{}` has no API key ({origin})",
            provider.name
        )));
    }
    if let Upstream::Http(up) = &provider.upstream {
        if up.addr.is_none() {
            return Err(Refusal::UpstreamUnavailable(format!(
                "provider `{}` host `{}` is not resolved",
                provider.name, up.host
            )));
        }
    }
    Ok(())
}

async fn answer_json(session: &mut Session, ctx: &RequestCtx, body: Bytes) -> Result<()> {
    let mut header = ResponseHeader::build(http::StatusCode::OK, Some(3))?;
    header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    if let Some(id) = &ctx.request_id {
        header.insert_header(headers::REQUEST_ID, id.clone())?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}
