//! The upstream phases of an admitted request, as Pingora calls them (and the relay calls
//! them too): pick the peer, rewrite the request for the provider (its credential, path and
//! identity headers instead of the agent's), and ready the response for metering.

use std::time::Instant;

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use super::usage::UsageMeter;
use super::{headers, request, Forward, RequestCtx};
use crate::config::Snapshot;
use crate::identity::vouch::Subject;
use crate::providers::Upstream;

/// The provider (or service) connection for an admitted request.
pub(super) fn peer(ctx: &mut RequestCtx, mock_socket: &str) -> Result<Box<HttpPeer>> {
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
        Upstream::Mock => HttpPeer::new_uds(mock_socket, false, String::new())?,
    };
    peer.options.connection_timeout = Some(settings.connect_timeout);
    peer.options.total_connection_timeout = Some(settings.connect_timeout);
    peer.options.read_timeout = Some(settings.read_timeout);
    peer.options.write_timeout = Some(settings.read_timeout);
    ctx.upstream.started = Some(Instant::now());
    Ok(Box::new(peer))
}

/// The request as the provider must see it: Warden's credential for it, its base path, the
/// agent's identity headers; the agent's credential gone.
pub(super) fn rewrite_request(
    upstream_request: &mut RequestHeader,
    ctx: &RequestCtx,
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
        Upstream::Mock if ctx.mcp.is_some() => (&mock_authority, crate::mock::MCP_PATH),
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
    let path_and_query = match (ctx.service, &ctx.mcp) {
        (Some(call), _) => {
            let rest = uri.path().get(call.prefix_len..).filter(|p| !p.is_empty());
            request::join_path(base_path, rest.unwrap_or("/"), uri.query())
        }
        // An MCP server is one endpoint: its URL, exactly as configured.
        (None, Some(_)) => {
            let path = if base_path.is_empty() { "/" } else { base_path };
            match uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path.to_owned(),
            }
        }
        (None, None) => match &ctx.translation {
            // The other API's endpoint; the agent's query string is its own API's.
            Some(t) => request::join_path(base_path, t.upstream_path(), None),
            None => request::upstream_path(base_path, uri.path(), uri.query()),
        },
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
    )?;
    if let Some(span) = &ctx.span {
        super::trace::propagate(span, upstream_request);
    }
    match &ctx.translation {
        Some(translation) => translation.rewrite_headers(upstream_request),
        None => Ok(()),
    }
}

/// Readies metering for the provider's response header, and adds Warden's request id and the
/// agent's limits to it.
pub(super) fn on_response_header(
    response: &mut ResponseHeader,
    ctx: &mut RequestCtx,
    sessions: &crate::mcp::sessions::Sessions,
) -> Result<()> {
    if ctx.forward.is_none() {
        return Ok(());
    }
    if let (Some(call), Some(snapshot), Some(agent)) = (&mut ctx.mcp, &ctx.snapshot, ctx.agent) {
        let limit = snapshot.server.max_body_bytes;
        let agent = &snapshot.agents[agent].id;
        super::mcp::on_answer(response, call, agent, sessions, limit)?;
    }
    let upstream = &mut ctx.upstream;
    upstream.first_byte = Some(Instant::now());
    if response.status.is_success() && ctx.service.is_none() && ctx.mcp.is_none() {
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
    if let Some(translation) = &mut ctx.translation {
        translation.on_response_header(response)?;
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
    headers::insert_limits(
        response,
        ctx.admission.rate.as_ref(),
        ctx.admission.held.token_headroom(),
    )
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
