//! Admission, as named phases: authenticate → (Warden's own endpoints) → read body →
//! authorize → reserve → plan. Each phase is one function that returns what the next needs;
//! what a phase takes (the concurrency slot, reservations) lives in the request's
//! [`Admission`](super::admission::Admission), which gives it back if a later phase refuses.

use std::sync::Arc;

use bytes::Bytes;
use pingora::proxy::Session;

use super::admission::Estimate;
use super::request::BodyFields;
use super::stream_usage::{self, StreamOptions, UsageChunkFilter};
use super::{body, models, objects, request, service, translation, verify};
use super::{Forward, Refusal, RequestCtx, TunnelCredential, WardenProxy};
use crate::config::Snapshot;
use crate::identity::{Checks, Credential, Target};
use crate::objects::ObjectPath;
use crate::policy::revocations::RevokedKind;
use crate::policy::Agent;

/// What admission decided for a request that is not refused.
pub(super) enum Admitted {
    /// Warden answers itself (`GET /v1/models`, `POST /v1/verify`).
    Answer(Bytes),
    /// Forward the request with its body to the upstream.
    Forward(Body),
}

/// Where the body of an admitted request is forwarded from.
pub(super) enum Body {
    /// Pingora's retry buffer holds all of it; its normal phases send it upstream.
    Replayed,
    /// Not read: Pingora streams it to the upstream as it arrives (service calls).
    Streamed,
    /// Warden's own copy, sent by the [relay](super::relay): too large for the retry buffer,
    /// rewritten, or a stream whose usage report must be read even if the client leaves.
    Relayed(Bytes),
}

/// What the request is, once its agent and path are known.
enum Endpoint {
    /// `POST /v1/verify`: Warden judges an action.
    Verify,
    /// A call to a service (`/svc/<name>/…`, or a tunnel to a service's host).
    Service(Option<String>),
    /// `GET /v1/models[/{id}]`: Warden answers from policy.
    ModelList,
    /// `/mcp/<server>`: an MCP server's Streamable HTTP endpoint.
    Mcp,
    /// Anything else goes to a provider (the path may name a provider object).
    Provider(Option<ObjectPath<'static>>),
}

/// The body Warden read, and whether Pingora can replay it from its retry buffer.
struct ReadBody {
    bytes: Bytes,
    replayable: bool,
}

impl WardenProxy {
    /// Runs the admission phases for one request.
    pub(super) async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Admitted, Refusal> {
        let snapshot = self.load_snapshot(session, ctx)?;
        if session.req_header().uri.path() == super::token::PATH {
            let answer = super::token::answer(session, ctx, &snapshot, &self.nonces).await?;
            return Ok(Admitted::Answer(answer));
        }
        let (agent_index, tunnel_service) = self.authenticate(session, ctx, &snapshot)?;
        let agent = &snapshot.agents[agent_index];
        match endpoint(session, ctx, agent, tunnel_service)? {
            Endpoint::Verify => {
                ctx.admission.take_request_limits(agent)?;
                let now = ctx.arrived;
                let answer = verify::answer(session, ctx, &snapshot, agent, now).await?;
                Ok(Admitted::Answer(answer))
            }
            Endpoint::Service(tunnelled) => {
                let read = service::begin(session, ctx, &snapshot, agent, tunnelled.as_deref());
                Ok(Admitted::Forward(match read.await? {
                    Some(body) => Body::Relayed(body),
                    None => Body::Streamed,
                }))
            }
            Endpoint::Mcp => {
                let sessions = &self.mcp_sessions;
                let read = super::mcp::begin(session, ctx, &snapshot, agent, sessions).await?;
                Ok(Admitted::Forward(match read {
                    Some(body) if !body.is_empty() => Body::Relayed(body),
                    _ => Body::Streamed,
                }))
            }
            Endpoint::ModelList => {
                ctx.admission.take_request_limits(agent)?;
                let narrowing = ctx.credential.as_ref().and_then(Credential::narrowing);
                let path = session.req_header().uri.path();
                models::answer(&snapshot, agent, narrowing, path).map(Admitted::Answer)
            }
            Endpoint::Provider(objects) => {
                let read = read_body(session, ctx, &snapshot).await?;
                self.provider_call(session, ctx, &snapshot, agent, objects, read)
                    .await
            }
        }
    }

    /// The request's ids, and the policy snapshot every decision of this request reads.
    fn load_snapshot(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
    ) -> Result<Arc<Snapshot>, Refusal> {
        ctx.request_id = Some(super::headers::request_id());
        ctx.client_request_id = super::headers::client_request_id(session.req_header());
        let snapshot = self
            .policy
            .load_full()
            .ok_or_else(|| Refusal::UpstreamUnavailable("no valid policy is loaded".into()))?;
        ctx.span = super::trace::start(self.tracing.as_deref(), &snapshot, session.req_header());
        ctx.snapshot = Some(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    /// Phase 1: who is asking. Returns the agent's index and, for a request inside a tunnel
    /// to a service's host, that service. A request through an intercepted CONNECT is the
    /// tunnel's agent's, by the CONNECT's credential.
    fn authenticate(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
    ) -> Result<(usize, Option<String>), Refusal> {
        let revocations = &snapshot.revocations;
        let token_revoked = |jti: &str| revocations.get(RevokedKind::Token, jti).is_some();
        let request = session.req_header();
        let tunnel = session
            .digest()
            .and_then(|d| d.proxy_digest.as_deref())
            .and_then(|p| p.user_data.as_deref())
            .and_then(|u| u.downcast_ref::<TunnelCredential>());
        let identified = crate::identity::authenticate(
            &snapshot.identity,
            &Target {
                method: &request.method,
                uri: &request.uri,
                headers: tunnel.map_or(&request.headers, TunnelCredential::headers),
            },
            &Checks {
                now: ctx.arrived,
                token_revoked: &token_revoked,
                nonces: &self.nonces,
            },
        );
        match identified {
            Ok(principal) => {
                ctx.agent = Some(principal.agent);
                ctx.credential = Some(principal.credential);
                let service = tunnel.and_then(TunnelCredential::service);
                Ok((principal.agent, service.map(str::to_owned)))
            }
            Err((rejection, known)) => {
                if let Some(known) = known {
                    ctx.agent = Some(known.agent);
                    ctx.credential = Some(known.credential);
                }
                Err(rejection.into())
            }
        }
    }

    /// Phases 3 to 6 of a provider call: authorize (objects, model, route), reserve, plan.
    async fn provider_call(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
        agent: &Agent,
        objects: Option<ObjectPath<'static>>,
        read: ReadBody,
    ) -> Result<Admitted, Refusal> {
        let request = session.req_header();
        let method = &request.method;
        let needs_model = objects.as_ref().is_none_or(|o| o.needs_model(method));
        let content_type = request.headers.get(http::header::CONTENT_TYPE);
        let fields = if needs_model || request::reads_as_json(content_type, &read.bytes) {
            Some(request::body_fields(&read.bytes)?)
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
            ctx.provider = Some(objects::provider_for(snapshot, holder.as_deref())?);
            ctx.admission.take_request_limits(agent)?;
            return Ok(plan_as_read(ctx, session, read.bytes, read.replayable));
        };
        ctx.max_tokens = fields.output_cap;
        let model = authorize_model(ctx, snapshot, agent, &fields)?;
        let translated = translate(ctx, session, snapshot, agent, &fields, &read.bytes)?;
        let per_user = agent.limits.per_user.as_ref();
        let budgeted = agent.limits.budgets.any() || per_user.is_some_and(|u| u.limits.budgeted());
        let estimate = budgeted.then(|| Estimate {
            prompt: crate::limits::prompt::estimate(&read.bytes, model),
            // A translated request is capped as it was sent (Anthropic requires a cap).
            output: translated
                .as_ref()
                .and_then(|t| t.max_tokens)
                .unwrap_or_else(|| fields.output_bound(agent.limits.default_output_tokens)),
        });
        let now = ctx.arrived.as_second();
        ctx.admission
            .take_model_limits(agent, snapshot, model, estimate, now)?;
        let header = session.req_header().headers.get(super::headers::USER);
        let user = fields
            .user
            .as_deref()
            .or_else(|| header.and_then(|v| v.to_str().ok()));
        ctx.user = user.map(|u| super::error::truncated(u, 256).to_owned());
        ctx.admission
            .take_user_limits(agent, snapshot, model, estimate, user, now)?;
        if let Some(translated) = translated {
            ctx.forward = Some(Forward {
                body_len: translated.body.len(),
                rewritten: true,
                whole: true,
            });
            return Ok(Admitted::Forward(Body::Relayed(Bytes::from(
                translated.body,
            ))));
        }
        let (stream, options) = (fields.stream, fields.stream_options);
        Ok(plan_model_call(ctx, session, read, stream, options))
    }
}

/// Phase 4 for a model call in the other API than its provider's: the body translated for
/// the provider (its translation kept for the answer), or the refusal of what cannot be.
fn translate(
    ctx: &mut RequestCtx,
    session: &Session,
    snapshot: &Snapshot,
    agent: &Agent,
    fields: &BodyFields<'_>,
    body: &[u8],
) -> Result<Option<crate::translate::Translated>, Refusal> {
    let Some(provider) = ctx.provider.and_then(|i| snapshot.providers.get(i)) else {
        return Ok(None);
    };
    let path = session.req_header().uri.path();
    let Some(direction) = translation::direction(path, provider)? else {
        return Ok(None);
    };
    let created = u64::try_from(ctx.arrived.as_second()).unwrap_or(0);
    let (translation, translated) = translation::Translation::request(
        direction,
        body,
        agent.limits.default_output_tokens,
        fields.stream_options.include_usage,
        created,
    )?;
    ctx.translation = Some(translation);
    Ok(Some(translated))
}

/// Phase 2: what the request is for. Checks the agent's standing (revoked, suspended,
/// schedule), that the path is one Warden can judge, and — for provider calls — the agent's
/// `endpoints`. `/v1/verify` is judged before the standing: the verdict reports it.
fn endpoint(
    session: &Session,
    ctx: &RequestCtx,
    agent: &Agent,
    tunnel_service: Option<String>,
) -> Result<Endpoint, Refusal> {
    let request = session.req_header();
    let path = request.uri.path();
    let delegated = ctx.credential.as_ref().and_then(Credential::delegation);
    if path == verify::PATH && delegated.is_none() {
        return Ok(Endpoint::Verify);
    }
    crate::policy::check_agent(agent, ctx.arrived).map_err(|denial| match denial {
        // A delegated token dies with its parent: it is the credential that is revoked.
        crate::policy::Denial::AgentRevoked if delegated.is_some() => Refusal::CredentialRevoked,
        denial => denial.into(),
    })?;
    if path == verify::PATH {
        return Err(Refusal::EndpointNotAllowed(
            "a delegated token verifies no actions: its scope has none".into(),
        ));
    }
    request::check_path(path)?;
    if tunnel_service.is_some() || path.starts_with(service::PREFIX) {
        return Ok(Endpoint::Service(tunnel_service));
    }
    if path.starts_with(crate::mcp::PREFIX) {
        return Ok(Endpoint::Mcp);
    }
    crate::policy::check_endpoint(agent, &request.method, path)?;
    let objects = ObjectPath::of(path).map(ObjectPath::into_owned);
    if objects.is_none() && request.method == http::Method::GET {
        return Ok(Endpoint::ModelList);
    }
    Ok(Endpoint::Provider(objects))
}

/// Phase 3: the whole body, checked against a signature's digest. Pingora replays a body of
/// up to 64 KiB read here from its retry buffer (one pass); one declared longer is not copied
/// into the buffer at all.
async fn read_body(
    session: &mut Session,
    ctx: &RequestCtx,
    snapshot: &Snapshot,
) -> Result<ReadBody, Refusal> {
    let replayable = body::declared_length(session.req_header())
        .is_none_or(|len| len <= body::RETRY_BUFFER_LIMIT);
    if replayable {
        session.enable_retry_buffering();
    }
    let bytes = body::read(session, snapshot.server.max_body_bytes).await?;
    body::check_signed(ctx.credential.as_ref(), session.req_header(), &bytes)?;
    Ok(ReadBody { bytes, replayable })
}

/// Phase 4 for a model call: the model is the agent's (and its credential's) to use, and a
/// usable provider serves it.
fn authorize_model<'f>(
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    agent: &Agent,
    fields: &'f BodyFields<'_>,
) -> Result<&'f str, Refusal> {
    let model = fields.model()?;
    ctx.model = Some(model.to_owned());
    let narrowing = ctx.credential.as_ref().and_then(Credential::narrowing);
    crate::policy::check_model(agent, narrowing, model)?;
    let (index, provider) = snapshot
        .route(model)
        .ok_or_else(|| Refusal::no_provider_for(model))?;
    ctx.provider = Some(index);
    if let Some(why) = provider.unusable() {
        return Err(Refusal::UpstreamUnavailable(why));
    }
    Ok(model)
}

/// Phase 6 for a model call: how its body goes upstream. A stream that reports usage only on
/// request is asked for it (and what Warden added hidden from the client), so the body
/// changes and Warden relays its own copy; every stream is relayed, so that if its client
/// leaves, the relay reads on for the provider's usage report (Pingora's loop would stop).
fn plan_model_call(
    ctx: &mut RequestCtx,
    session: &Session,
    read: ReadBody,
    stream: bool,
    options: StreamOptions,
) -> Admitted {
    let path = session.req_header().uri.path();
    if stream_usage::needs_injection(path, stream, options) {
        if let Some(rewritten) = stream_usage::inject_include_usage(&read.bytes, options) {
            ctx.upstream.usage_filter = Some(UsageChunkFilter::default());
            ctx.forward = Some(Forward {
                body_len: rewritten.len(),
                rewritten: true,
                whole: true,
            });
            return Admitted::Forward(Body::Relayed(rewritten));
        }
    }
    let replay = read.replayable && !stream;
    plan_as_read(ctx, session, read.bytes, replay)
}

/// Forwards the body as the client sent it: replayed by Pingora when its retry buffer holds
/// all of it and `replay` allows, else relayed from Warden's copy.
fn plan_as_read(ctx: &mut RequestCtx, session: &Session, body: Bytes, replay: bool) -> Admitted {
    ctx.forward = Some(Forward {
        body_len: body.len(),
        rewritten: false,
        whole: true,
    });
    Admitted::Forward(if replay && !session.retry_buffer_truncated() {
        Body::Replayed
    } else {
        Body::Relayed(body)
    })
}
