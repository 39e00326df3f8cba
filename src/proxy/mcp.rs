//! `/mcp/<server>`: an agent's MCP traffic (Streamable HTTP, both protocol eras), admitted by
//! the agent's `mcp:` grant and forwarded with the server's credential in place of the agent's.
//!
//! A POST carries one JSON-RPC message, read whole and exactly as the server will read it
//! (`mcp::message`); its routing headers must agree with it, and a session it names must be
//! the agent's. A request is judged by method: a tool call by the tool's rules and then its
//! quotas, a resource or prompt by its globs, a list forwarded and its answer cut to the grant.
//! A GET (the server's stream) and a DELETE (the end of a session) carry no message: only
//! their session is checked. Every answer goes through the list filter ([`McpCall::answer`]).

use bytes::Bytes;
use http::Method;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{body, Forward, Refusal, RequestCtx};
use crate::config::Snapshot;
use crate::identity::Credential;
use crate::mcp::answer::AnswerFilter;
use crate::mcp::sessions::Sessions;
use crate::mcp::{self, codes, Invalid, McpGrant, Message, Request};
use crate::policy::Agent;
use crate::providers::Serves;

/// The session header of Streamable HTTP.
const SESSION: &str = "mcp-session-id";

/// What Warden knows of an admitted MCP request, for its answer and its record.
#[derive(Debug)]
pub struct McpCall {
    /// The server's name (its grant's key).
    pub server: String,
    /// The JSON-RPC method of a POSTed request or notification.
    pub method: Option<String>,
    /// The tool of a `tools/call`, and the policy entry that admitted it (the metrics label).
    pub tool: Option<(String, String)>,
    pub arguments_sha256: Option<String>,
    /// `initialize`: the session the server opens is bound to the agent.
    opens_session: bool,
    /// A DELETE of this session: forgotten once the server agrees.
    ends_session: Option<String>,
    /// A JSON answer is read whole (to a list, or a tool call whose `isError` is recorded).
    whole_answer: bool,
    /// Filters the answer's body, once its header has come.
    pub answer: Option<AnswerFilter>,
    /// The grant narrowed to a delegated credential's scope (`None`: the agent's grant).
    narrowed: Option<McpGrant>,
}

impl McpCall {
    /// The audit record's MCP part.
    pub fn into_audit(self) -> crate::audit::event::Mcp {
        crate::audit::event::Mcp {
            method: self.method,
            tool: self.tool.map(|(tool, _)| tool),
            arguments_sha256: self.arguments_sha256,
            is_error: self.answer.and_then(|a| a.is_error),
        }
    }
}

/// The policy entry of a tool call the agent's grant does not name (the metrics label).
pub const OTHER_TOOL: &str = "other";

/// Admits the MCP request in `session` for `agent`, and returns the body to forward (`None`:
/// a GET or DELETE, which has none).
pub async fn begin(
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    agent: &Agent,
    sessions: &Sessions,
) -> Result<Option<Bytes>, Refusal> {
    let request = session.req_header();
    let name = request.uri.path()[mcp::PREFIX.len()..].to_owned();
    let server = snapshot
        .providers
        .iter()
        .position(|p| p.serves == Serves::Mcp && p.name == name)
        .ok_or_else(|| Refusal::McpServerNotFound(name.clone()))?;
    let grant = agent
        .mcp
        .get(&name)
        .ok_or_else(|| Refusal::McpServerNotAllowed(name.clone()))?;
    let narrowed = match ctx.credential.as_ref().and_then(Credential::delegation) {
        Some(delegation) => match delegation.scope.mcp_tools(&name) {
            Some(tools) => Some(grant.narrowed(tools)),
            None => return Err(Refusal::McpServerNotAllowed(name)),
        },
        None => None,
    };
    ctx.provider = Some(server);
    let mut call = McpCall {
        server: name,
        method: None,
        tool: None,
        arguments_sha256: None,
        opens_session: false,
        ends_session: None,
        whole_answer: false,
        answer: None,
        narrowed,
    };
    let held = held_session(
        request.headers.get(SESSION),
        &call.server,
        &agent.id,
        sessions,
    )?;
    let method = request.method.clone();
    let read = if method == Method::POST {
        let bytes = body::read(session, snapshot.server.max_body_bytes).await?;
        body::check_signed(ctx.credential.as_ref(), session.req_header(), &bytes)?;
        Some(bytes)
    } else if method == Method::GET || method == Method::DELETE {
        call.ends_session = (method == Method::DELETE).then_some(held).flatten();
        None
    } else {
        return Err(invalid(
            codes::INVALID_REQUEST,
            format!("MCP's Streamable HTTP takes POST, GET and DELETE, not {method}"),
        ));
    };
    let outcome = match &read {
        Some(bytes) => {
            let narrowed = call.narrowed.take();
            let grant = narrowed.as_ref().unwrap_or(grant);
            let judged = judge(ctx, snapshot, agent, grant, &mut call, session, bytes);
            call.narrowed = narrowed;
            judged
        }
        None if method == Method::GET => ctx.admission.take_rate(agent),
        None => ctx.admission.take_request_limits(agent),
    };
    ctx.mcp = Some(call);
    outcome?;
    if let Some(why) = snapshot.providers[server].unusable() {
        return Err(Refusal::UpstreamUnavailable(why));
    }
    ctx.forward = Some(Forward {
        body_len: read.as_ref().map_or(0, Bytes::len),
        rewritten: false,
        whole: read.is_some(),
    });
    Ok(read)
}

/// The session a request names, checked to be `agent`'s; `None` when it names none.
fn held_session(
    sent: Option<&http::HeaderValue>,
    server: &str,
    agent: &str,
    sessions: &Sessions,
) -> Result<Option<String>, Refusal> {
    let Some(sent) = sent else { return Ok(None) };
    match sent.to_str() {
        Ok(id) if sessions.is_held_by(server, id, agent) => Ok(Some(id.to_owned())),
        _ => Err(Refusal::McpSessionNotFound),
    }
}

/// Judges a POSTed message against the grant, and takes the agent's request limits and the
/// tool's quotas.
fn judge(
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    agent: &Agent,
    grant: &McpGrant,
    call: &mut McpCall,
    session: &Session,
    body: &[u8],
) -> Result<(), Refusal> {
    let message = mcp::message::parse(body).map_err(|unreadable| match unreadable {
        mcp::message::Unreadable::Json(why) => Refusal::InvalidJson(why),
        mcp::message::Unreadable::Batch => invalid(
            codes::INVALID_REQUEST,
            "JSON-RPC batches are not accepted: send one message per request".into(),
        ),
        mcp::message::Unreadable::NotJsonRpc(why) => invalid(codes::INVALID_REQUEST, why.into()),
    })?;
    let id = match &message {
        Message::Request { id, .. } => id.clone(),
        _ => Value::Null,
    };
    mcp::check_routing_headers(&session.req_header().headers, &message)
        .map_err(|invalid| Refusal::invalid_mcp(invalid, id.clone()))?;
    let (method, params) = match &message {
        Message::Request { method, params, .. } => (method, params.as_ref()),
        Message::Notification { method } if mcp::is_notification(method) => {
            call.method = Some(capped(method));
            return ctx.admission.take_request_limits(agent);
        }
        Message::Notification { method } => {
            return Err(invalid(
                codes::METHOD_NOT_FOUND,
                format!("`{}` is not an MCP notification", capped(method)),
            ))
        }
        Message::Response => return ctx.admission.take_request_limits(agent),
    };
    call.method = Some(capped(method));
    call.opens_session = method == "initialize";
    let refused = |denial| Refusal::mcp(denial, id.clone());
    let request = mcp::classify(grant, method, params).map_err(|e| match e {
        Ok(denial) => refused(denial),
        Err(invalid) => Refusal::invalid_mcp(invalid, id.clone()),
    });
    if method == "tools/call" {
        let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
        let arguments = params.and_then(|p| p.get("arguments"));
        call.tool = name.map(|n| (capped(n), String::from(OTHER_TOOL)));
        call.arguments_sha256 = Some(arguments_digest(arguments));
        call.whole_answer = true;
    }
    match request? {
        Request::ToolCall { name, arguments } => {
            let rule = mcp::rules::tool_rule(grant, name).map_err(refused)?;
            if let Some((_, entry)) = &mut call.tool {
                entry.clone_from(&rule.key);
            }
            mcp::rules::check_arguments(rule, name, arguments).map_err(refused)?;
            ctx.admission.take_request_limits(agent)?;
            let ledger = &agent.limits.mcp_calls;
            let now = ctx.arrived.as_second();
            mcp::rules::reserve(
                rule,
                &call.server,
                name,
                arguments,
                ledger,
                now,
                &snapshot.days,
            )
            .map_err(refused)
        }
        Request::List => {
            call.whole_answer = true;
            ctx.admission.take_request_limits(agent)
        }
        Request::Other if method == "subscriptions/listen" => ctx.admission.take_rate(agent),
        Request::Other => ctx.admission.take_request_limits(agent),
    }
}

/// Readies the answer of an admitted MCP request: binds the session `initialize` opened (or
/// forgets the one a DELETE ended), and puts the list filter on its body.
pub fn on_answer(
    response: &mut ResponseHeader,
    call: &mut McpCall,
    agent: &str,
    sessions: &Sessions,
    limit: usize,
) -> pingora::Result<()> {
    let ok = response.status.is_success();
    if let (true, Some(session)) = (ok, &call.ends_session) {
        sessions.end(&call.server, session);
    }
    let opened = response.headers.get(SESSION).and_then(|v| v.to_str().ok());
    if let (true, true, Some(session)) = (ok, call.opens_session, opened) {
        if !sessions.bind(&call.server, session, agent) {
            log::warn!("MCP server `{}` handed out a session id another agent holds; the answer goes without it", call.server);
            response.remove_header(SESSION);
        }
    }
    let content_type = response
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes());
    let filter = AnswerFilter::new(content_type, call.whole_answer, limit);
    if filter.rewrites()
        && response
            .remove_header(&http::header::CONTENT_LENGTH)
            .is_some()
    {
        response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    call.answer = Some(filter);
    Ok(())
}

/// Filters a chunk of the answer for the agent's grant on the call's server.
pub fn filter_answer(ctx: &mut RequestCtx, chunk: &mut Option<Bytes>, end_of_stream: bool) {
    let (Some(snapshot), Some(agent), Some(call)) =
        (ctx.snapshot.as_deref(), ctx.agent, &mut ctx.mcp)
    else {
        return;
    };
    let grant = match &call.narrowed {
        Some(narrowed) => Some(narrowed),
        None => snapshot
            .agents
            .get(agent)
            .and_then(|a| a.mcp.get(&call.server)),
    };
    if let (Some(grant), Some(answer)) = (grant, &mut call.answer) {
        answer.filter(grant, chunk, end_of_stream);
    }
}

fn invalid(code: i64, message: String) -> Refusal {
    Refusal::invalid_mcp(Invalid { code, message }, Value::Null)
}

/// A name from the request as recorded: cut at 200 bytes (a hostile name cannot bloat
/// records or logs).
fn capped(name: &str) -> String {
    super::error::truncated(name, 200).to_owned()
}

/// SHA-256 (hex) of `arguments` in canonical JSON: object keys sorted, no whitespace (absent
/// arguments digest as `{}`).
pub fn arguments_digest(arguments: Option<&Value>) -> String {
    let mut canonical = Vec::new();
    crate::json::write_canonical(
        arguments.unwrap_or(&Value::Object(Default::default())),
        &mut canonical,
    );
    hex::encode(Sha256::digest(&canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_does_not_depend_on_key_order_or_spacing() {
        let a: Value =
            serde_json::from_str(r#"{"b": [1, {"y": 2, "x": "é"}], "a": null}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":null,"b":[1,{"x":"é","y":2}]}"#).unwrap();
        assert_eq!(arguments_digest(Some(&a)), arguments_digest(Some(&b)));
        let mut canonical = Vec::new();
        crate::json::write_canonical(&a, &mut canonical);
        assert_eq!(
            canonical,
            r#"{"a":null,"b":[1,{"x":"é","y":2}]}"#.as_bytes()
        );
        assert_eq!(arguments_digest(None), hex::encode(Sha256::digest(b"{}")));
        assert_ne!(arguments_digest(Some(&a)), arguments_digest(None));
    }
}
