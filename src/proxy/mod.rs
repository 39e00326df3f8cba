//! The Pingora `ProxyHttp` implementation: one request, top to bottom, as named phases.
//!
//! `request_filter` runs admission ([`admit`]): load the policy snapshot once, authenticate,
//! classify the endpoint, read the body, authorize the model, reserve limits
//! ([`admission`]), plan how the body goes upstream. A refusal is answered right there
//! ([`respond`]). An admitted request is forwarded: Pingora replays the body it buffered while
//! Warden read it and runs its upstream phases ([`upstream`]: peer, request rewrite, response
//! header), the response filters meter usage as chunks pass ([`usage`], [`stream_usage`]), and
//! `logging` settles the budgets and records metrics, access log and audit once ([`record`]).
//!
//! A body Pingora cannot replay (over its 64 KiB retry buffer), one Warden rewrote, and every
//! stream are forwarded by the [`relay`] instead, which calls the same upstream phases and
//! response filters in the same context: only who moves the bytes differs.

mod admission;
mod admit;
pub mod body;
pub mod ctx;
pub mod error;
pub mod headers;
mod jsonrpc;
mod mcp;
pub mod models;
mod objects;
pub mod record;
mod refusals;
pub mod relay;
pub mod request;
pub mod respond;
pub mod service;
mod settle;
pub mod stream_usage;
mod token;
pub mod trace;
mod translation;
mod upstream;
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
use pingora::{Error, ErrorSource, Result};

use crate::audit::Auditor;
use crate::clock::Clock;
use crate::config::Snapshot;
use crate::metrics::Metrics;
use crate::objects::Owners;
use admit::{Admitted, Body};
pub use ctx::{Forward, RequestCtx, TunnelCredential, UpstreamLeg};

/// The log target of the one line every request leaves (its request id, agent, outcome); the
/// logger queues these rather than writing them on the request's thread.
pub const ACCESS_LOG_TARGET: &str = "warden::access";
pub use error::Refusal;

/// Warden's proxy: shared by every request, holds only handles to shared state.
pub struct WardenProxy {
    /// The live policy; `None` until a first valid policy is loaded.
    pub policy: Arc<ArcSwapOption<Snapshot>>,
    pub metrics: Arc<Metrics>,
    /// Unix socket of the built-in mock provider.
    pub mock_socket: String,
    /// Where audit events go; `None` when the policy has no `audit:`.
    pub audit: Option<Arc<Auditor>>,
    /// Provider connections for the bodies the [`relay`] forwards.
    pub connector: Connector,
    /// A request's arrival time (expiry and suspension are judged at it; audit records it).
    pub clock: Arc<dyn Clock>,
    /// Signature nonces seen recently: live state, kept across policy reloads.
    pub nonces: crate::identity::NonceCache,
    /// Which agent created each provider object seen created: live state, like `nonces`.
    pub owners: Arc<Owners>,
    /// Which agent opened each MCP session: live state, like `nonces`.
    pub mcp_sessions: Arc<crate::mcp::sessions::Sessions>,
    /// The span exporter; `None` when the policy Warden started with has no `tracing:`.
    pub tracing: Option<Arc<crate::telemetry::Tracing>>,
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
            Ok(Admitted::Forward(Body::Relayed(body))) => {
                relay::forward(self, &self.connector, session, ctx, body).await
            }
            Err(refusal) => respond::refuse(session, ctx, refusal).await.map(|()| true),
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        upstream::peer(ctx, &self.mock_socket)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream::rewrite_request(upstream_request, ctx)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream::on_response_header(response, ctx, &self.mcp_sessions)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(chunk) = body {
            if ctx.upstream.first_chunk.is_none() && !chunk.is_empty() {
                ctx.upstream.first_chunk = Some(Instant::now());
            }
            ctx.upstream.meter.feed(chunk);
        }
        if ctx.upstream.creates {
            self.record_created(ctx, end_of_stream);
        }
        if let Some(filter) = &mut ctx.upstream.usage_filter {
            filter.filter(body, end_of_stream);
        }
        if ctx.mcp.is_some() {
            mcp::filter_answer(ctx, body, end_of_stream);
        }
        if let Some(translation) = &mut ctx.translation {
            translation.filter(body, end_of_stream);
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
