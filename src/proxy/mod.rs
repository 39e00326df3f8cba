//! The Pingora `ProxyHttp` implementation: one request, top to bottom, in one pass.
//!
//! `request_filter` loads the policy snapshot once, identifies the agent, authorizes the path,
//! reads the whole body to learn the model, authorizes the model, routes it, and takes the
//! agent's limits — each step one call into `identity`, `policy` or `limits`. A refusal is
//! answered right there. An admitted request goes on through Pingora's own phases in the same
//! context: Pingora replays the body it buffered while Warden read it, `upstream_peer` picks the
//! provider, `upstream_request_filter` swaps credentials and identity headers, the response
//! filters meter usage as chunks pass, and `logging` records metrics and the audit event once.
//!
//! Only a body larger than Pingora's 64 KiB retry buffer takes another way: [`large_body`]
//! forwards it with Pingora's connector, calling these same upstream phase methods.

mod admission;
pub mod body;
pub mod ctx;
pub mod error;
pub mod headers;
pub mod large_body;
pub mod models;
mod objects;
mod record;
pub mod request;
pub mod respond;
pub mod service;
pub mod stream_usage;
pub mod usage;
pub mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::audit::Auditor;
use crate::clock::Clock;
use crate::config::Snapshot;
use crate::identity::vouch::Subject;
use crate::identity::{Checks, Credential, Target};
use crate::limits::budget;
use crate::metrics::Metrics;
use crate::objects::{ObjectPath, Owners};
use crate::policy::revocations::RevokedKind;
use crate::providers::Upstream;
use admission::{
    check_signed_body, release, take_concurrency_slot, take_rate, take_request_limits,
};
pub use ctx::{Forward, RequestCtx, TunnelCredential, UpstreamLeg};

/// The log target of the one line every request leaves (its request id, agent, outcome); the
/// logger queues these rather than writing them on the request's thread.
pub const ACCESS_LOG_TARGET: &str = "warden::access";
pub use error::Refusal;
use stream_usage::UsageChunkFilter;
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
    /// Provider connections for bodies over Pingora's retry buffer (see [`large_body`]).
    pub connector: Connector,
    /// A request's arrival time (expiry and suspension are judged at it; audit records it).
    pub clock: Arc<dyn Clock>,
    /// Signature nonces seen recently: live state, kept across policy reloads.
    pub nonces: crate::identity::NonceCache,
    /// Which agent created each provider object seen created: live state, like `nonces`.
    pub owners: Arc<Owners>,
}

/// What admission decided for a request that is not refused.
enum Admitted {
    /// Warden answers itself (`GET /v1/models`).
    Answer(Bytes),
    /// Forward the request with its body to the provider.
    Forward(Body),
}

/// Where the body of an admitted request is forwarded from.
enum Body {
    /// Pingora's retry buffer holds all of it; its normal phases send it upstream.
    Replayed,
    /// Not read: Pingora streams it to the upstream as it arrives (service calls).
    Streamed,
    /// Too large for the retry buffer: Warden's copy is forwarded by [`large_body`].
    Large(Bytes),
}

#[async_trait]
impl ProxyHttp for WardenProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.clock.as_ref())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        match self.admit(session, ctx).await {
            Ok(Admitted::Answer(body)) => {
                models::write_answer(session, ctx, body).await?;
                Ok(true)
            }
            Ok(Admitted::Forward(Body::Replayed | Body::Streamed)) => Ok(false),
            Ok(Admitted::Forward(Body::Large(body))) => {
                large_body::forward(self, &self.connector, session, ctx, body).await
            }
            Err(refusal) => respond::refuse(session, ctx, refusal).await.map(|()| true),
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (snapshot, provider, _) = admitted(ctx)?;
        let settings = &snapshot.server;
        let provider = &snapshot.providers[provider];
        let mut peer = match &provider.upstream {
            Upstream::Http(up) => match up.addr.get() {
                Some(addr) => {
                    let mut peer = HttpPeer::new(addr, up.tls, up.host.clone());
                    peer.options.ca.clone_from(&up.ca);
                    peer
                }
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
        ctx.upstream.started = Some(Instant::now());
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (snapshot, provider_index, forward) = admitted(ctx)?;
        let agent_index = ctx
            .agent
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no agent"))?;
        let agent = snapshot
            .agents
            .get(agent_index)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no agent"))?;
        let provider = &snapshot.providers[provider_index];
        let mock_authority = http::HeaderValue::from_static("warden-mock");
        let (authority, base_path) = match &provider.upstream {
            Upstream::Http(up) => (&up.authority, up.base_path.as_str()),
            Upstream::Mock => (&mock_authority, "/v1"),
        };
        let vouch = match (&snapshot.identity.voucher, provider.identity_header) {
            (Some(voucher), true) => voucher.header(
                &Subject {
                    agent: agent_index,
                    agent_id: &agent.id,
                    owner: agent.owner.as_deref(),
                    provider: provider_index,
                    provider_name: &provider.name,
                },
                ctx.arrived.as_second(),
            ),
            _ => None,
        };
        let uri = &upstream_request.uri;
        let path_and_query = match ctx.service {
            Some(call) => {
                let rest = uri.path().get(call.prefix_len..).filter(|p| !p.is_empty());
                request::join_path(base_path, rest.unwrap_or("/"), uri.query())
            }
            None => request::upstream_path(base_path, uri.path(), uri.query()),
        };
        headers::rewrite_upstream(
            upstream_request,
            headers::UpstreamIdentity {
                path_and_query,
                authority,
                auth: &provider.auth,
                agent_id: &agent.id_header,
                request_id: ctx.request_id.as_ref(),
                client_request_id: ctx.client_request_id.as_ref(),
                body_len: forward.whole.then_some(forward.body_len),
                body_rewritten: forward.rewritten,
                provider_headers: &provider.headers,
                vouch,
            },
        )
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.forward.is_none() {
            return Ok(());
        }
        let upstream = &mut ctx.upstream;
        upstream.first_byte = Some(Instant::now());
        if response.status.is_success() && ctx.service.is_none() {
            let content_type = response
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes());
            upstream.meter = UsageMeter::for_content_type(content_type);
            if upstream.creates {
                upstream.meter.want_object_id();
            }
        }
        if upstream.usage_filter.is_some() {
            if matches!(upstream.meter, UsageMeter::Sse { .. }) {
                // Chunks are removed: the length the provider declared no longer holds. Chunked
                // framing keeps the client's connection reusable (without a length or chunking,
                // the body would end with the connection).
                if response
                    .remove_header(&http::header::CONTENT_LENGTH)
                    .is_some()
                {
                    response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
                }
            } else {
                upstream.usage_filter = None;
            }
        }
        if let Some(theirs) = response.headers.get(headers::REQUEST_ID) {
            if ctx.request_id.as_ref() != Some(theirs) {
                upstream.provider_request_id = Some(theirs.clone());
                response.insert_header(headers::PROVIDER_REQUEST_ID, theirs.clone())?;
            }
        }
        if let Some(id) = &ctx.request_id {
            response.insert_header(headers::REQUEST_ID, id.clone())?;
        }
        headers::insert_limits(response, ctx.rate.as_ref(), ctx.held.token_headroom())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(chunk) = body {
            ctx.upstream.meter.feed(chunk);
        }
        if ctx.upstream.creates {
            self.record_created(ctx, end_of_stream);
        }
        if let Some(filter) = &mut ctx.upstream.usage_filter {
            filter.filter(body, end_of_stream);
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        respond::fail_to_proxy(session, e, ctx).await
    }

    /// A client that went away is an outcome (`client_closed` in metrics and audit), not a
    /// proxy error: Pingora's error log stays for provider and internal failures.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        matches!(e.esource(), ErrorSource::Downstream)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        self.record(session, e, ctx);
    }
}

impl WardenProxy {
    /// Identify → authorize → read body → authorize model → route → limit.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Admitted, Refusal> {
        ctx.request_id = Some(headers::request_id());
        ctx.client_request_id = headers::client_request_id(session.req_header());
        let snapshot = self
            .policy
            .load_full()
            .ok_or_else(|| Refusal::UpstreamUnavailable("no valid policy is loaded".into()))?;
        ctx.snapshot = Some(Arc::clone(&snapshot));

        let now = ctx.arrived;
        let revocations = &snapshot.revocations;
        let token_revoked = |jti: &str| revocations.get(RevokedKind::Token, jti).is_some();
        let request = session.req_header();
        // A request that came through an intercepted CONNECT is the tunnel's agent's.
        let tunnel = session
            .digest()
            .and_then(|d| d.proxy_digest.as_deref())
            .and_then(|p| p.user_data.as_deref())
            .and_then(|u| u.downcast_ref::<TunnelCredential>());
        let tunnel_service = tunnel
            .and_then(TunnelCredential::service)
            .map(str::to_owned);
        let identified = crate::identity::authenticate(
            &snapshot.identity,
            &Target {
                method: &request.method,
                uri: &request.uri,
                headers: tunnel.map_or(&request.headers, TunnelCredential::headers),
            },
            &Checks {
                now,
                token_revoked: &token_revoked,
                nonces: &self.nonces,
            },
        );
        let principal = match identified {
            Ok(principal) => principal,
            Err((rejection, known)) => {
                if let Some(known) = known {
                    ctx.agent = Some(known.agent);
                    ctx.credential = Some(known.credential);
                }
                return Err(rejection.into());
            }
        };
        ctx.agent = Some(principal.agent);
        let agent = &snapshot.agents[principal.agent];
        ctx.credential = Some(principal.credential);
        // Warden's own endpoint: the agent's status and schedule are part of the verdict.
        if session.req_header().uri.path() == verify::PATH {
            take_request_limits(agent, ctx)?;
            return verify::answer(session, ctx, &snapshot, agent, now)
                .await
                .map(Admitted::Answer);
        }
        crate::policy::check_agent(agent, now)?;

        let path = session.req_header().uri.path();
        request::check_path(path)?;
        if tunnel_service.is_some() || path.starts_with(service::PREFIX) {
            let read = service::begin(session, ctx, &snapshot, agent, tunnel_service.as_deref());
            return Ok(Admitted::Forward(match read.await? {
                Some(body) => Body::Large(body),
                None => Body::Streamed,
            }));
        }
        crate::policy::check_endpoint(agent, &session.req_header().method, path)?;
        let objects = ObjectPath::of(path).map(ObjectPath::into_owned);
        if objects.is_none() && session.req_header().method == http::Method::GET {
            take_request_limits(agent, ctx)?;
            let narrowing = ctx.credential.as_ref().and_then(Credential::narrowing);
            let path = session.req_header().uri.path();
            return models::answer(&snapshot, agent, narrowing, path).map(Admitted::Answer);
        }

        // Pingora replays a body of up to 64 KiB read here from its retry buffer (one pass). A
        // longer one (declared so, or overflowing the buffer) is forwarded by `large_body`; one
        // declared longer is not copied into the buffer at all.
        let replayable = body::declared_length(session.req_header())
            .is_none_or(|len| len <= body::RETRY_BUFFER_LIMIT);
        if replayable {
            session.enable_retry_buffering();
        }
        let body = body::read(session, snapshot.server.max_body_bytes).await?;
        check_signed_body(ctx, session, &body)?;
        let content_type = session.req_header().headers.get(http::header::CONTENT_TYPE);
        let method = &session.req_header().method;
        let needs_model = objects.as_ref().is_none_or(|o| o.needs_model(method));
        let fields = if needs_model || request::reads_as_json(content_type, &body) {
            Some(request::body_fields(&body)?)
        } else {
            None
        };
        let in_path = objects.as_ref().and_then(|o| o.object.as_ref());
        let in_body = fields.as_ref().map_or(&[][..], |f| &f.objects);
        let holder = objects::check_owned(&self.owners, agent, in_path, in_body).await?;
        let stored = fields.as_ref().is_some_and(|f| f.store);
        ctx.upstream.creates = objects.as_ref().is_some_and(|o| o.creates(method, stored));
        let Some(fields) = fields.filter(|f| f.model.is_some() || needs_model) else {
            // About provider objects, without a model: no tokens to reserve.
            ctx.provider = Some(objects::provider_for(&snapshot, holder.as_deref())?);
            take_request_limits(agent, ctx)?;
            return Ok(forward_as_read(ctx, session, body, replayable));
        };
        let model = fields.model()?;
        ctx.model = Some(model.to_owned());
        let narrowing = ctx.credential.as_ref().and_then(Credential::narrowing);
        crate::policy::check_model(agent, narrowing, model)?;
        let (provider_index, provider) = snapshot
            .route(model)
            .ok_or_else(|| Refusal::no_provider_for(model))?;
        ctx.provider = Some(provider_index);
        if let Some(why) = provider.unusable() {
            return Err(Refusal::UpstreamUnavailable(why));
        }

        // A refused request spends no limit: the concurrency slot and the token reservation are
        // taken first (and given back if a later limit refuses), because a rate token once
        // taken cannot be returned.
        take_concurrency_slot(agent, ctx)?;
        let budgets = &agent.limits.budgets;
        if budgets.tokens.iter().any(Option::is_some) || budgets.has_spend() {
            let output = fields.output_bound(agent.limits.default_output_tokens);
            let prompt = crate::limits::prompt::estimate(&body, model);
            let estimate = budget::estimate(output, prompt);
            let cost = snapshot
                .prices
                .find(model)
                .map(|price| price.micro_usd(prompt, output));
            match budgets.reserve(estimate, cost, now.as_second(), &snapshot.days) {
                Ok(held) => ctx.held = held,
                Err(refusal) => {
                    ctx.in_flight = None;
                    return Err(Refusal::for_budget(refusal, model));
                }
            }
        }
        if let Err(refusal) = take_rate(agent, ctx) {
            release(agent, ctx);
            return Err(refusal);
        }

        // A stream that reports usage only on request is asked for it (and the extra chunk
        // hidden from the client): the body changes, so Warden forwards its own copy.
        let path = session.req_header().uri.path();
        if stream_usage::needs_injection(path, fields.stream, fields.stream_options) {
            if let Some(rewritten) =
                stream_usage::inject_include_usage(&body, fields.stream_options)
            {
                ctx.upstream.usage_filter = Some(UsageChunkFilter::default());
                ctx.forward = Some(Forward {
                    body_len: rewritten.len(),
                    rewritten: true,
                    whole: true,
                });
                return Ok(Admitted::Forward(Body::Large(rewritten)));
            }
        }
        // A stream goes through Warden's own forwarder too: if its client leaves, the forwarder
        // reads on for the provider's usage report (Pingora's loop would stop).
        let replay = replayable && !fields.stream;
        Ok(forward_as_read(ctx, session, body, replay))
    }
}

/// Forwards the body as the client sent it: replayed by Pingora when its retry buffer holds
/// all of it and `replay` allows, else from Warden's copy.
fn forward_as_read(ctx: &mut RequestCtx, session: &Session, body: Bytes, replay: bool) -> Admitted {
    ctx.forward = Some(Forward {
        body_len: body.len(),
        rewritten: false,
        whole: true,
    });
    Admitted::Forward(if replay && !session.retry_buffer_truncated() {
        Body::Replayed
    } else {
        Body::Large(body)
    })
}

/// The snapshot, provider index and forwarding plan of an admitted request.
fn admitted(ctx: &RequestCtx) -> Result<(&Snapshot, usize, Forward)> {
    match (ctx.snapshot.as_deref(), ctx.provider, ctx.forward) {
        (Some(snapshot), Some(provider), Some(forward)) => Ok((snapshot, provider, forward)),
        _ => Err(Error::explain(
            ErrorType::InternalError,
            "request was not admitted",
        )),
    }
}
