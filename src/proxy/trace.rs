//! The request's span in the proxy: started as the request arrives (continuing the client's
//! trace), passed on to the upstream as its parent, ended by the record step with what the
//! request turned out to be — the GenAI, HTTP and Warden attributes, never a secret or a
//! prompt.

use opentelemetry::propagation::Injector;
use opentelemetry::{Array, KeyValue, StringValue, Value};
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::error::truncated;
use super::mcp::{McpCall, OTHER_TOOL};
use super::settle::Outcome;
use super::{token, verify, RequestCtx};
use crate::code::Code;
use crate::config::Snapshot;
use crate::identity::Credential;
use crate::policy::Agent;
use crate::providers::{Provider, WireApi};
use crate::telemetry::{Ending, RequestSpan, Tracing};

/// Longest path and model written as an attribute (as in audit events).
const MAX_PATH: usize = 2048;
const MAX_MODEL: usize = 256;

/// The request's span, when the policy in force traces.
pub(super) fn start(
    tracing: Option<&Tracing>,
    snapshot: &Snapshot,
    request: &RequestHeader,
) -> Option<RequestSpan> {
    snapshot.tracing.as_ref()?;
    Some(tracing?.start(&request.headers))
}

/// The client's trace context replaced by one naming Warden's span as the parent.
pub(super) fn propagate(span: &RequestSpan, upstream: &mut RequestHeader) {
    upstream.remove_header("traceparent");
    upstream.remove_header("tracestate");
    span.propagate(&mut Headers(upstream));
}

/// Writes the propagated fields into the upstream request (an empty `tracestate` is left out,
/// as W3C Trace Context allows).
struct Headers<'a>(&'a mut RequestHeader);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            return;
        }
        if self.0.insert_header(key.to_owned(), value).is_err() {
            log::debug!("trace context header `{key}` could not be set");
        }
    }
}

/// Ends the request's span (if it has one) with what the request was and how it ended.
pub(super) fn end(session: &Session, ctx: &mut RequestCtx, outcome: &Outcome) {
    let Some(span) = ctx.span.take() else {
        return;
    };
    if !span.is_recording() {
        return;
    }
    let request = session.req_header();
    let snapshot = ctx.snapshot.as_deref();
    let agent = snapshot.zip(ctx.agent).map(|(s, a)| &s.agents[a]);
    let provider = snapshot.zip(ctx.provider).map(|(s, p)| &s.providers[p]);
    let path = request.uri.path();
    let method = request.method.as_str();
    let mut attributes = Vec::with_capacity(24);
    let mut add = |key: &'static str, value: Value| attributes.push(KeyValue::new(key, value));
    add("http.request.method", method.to_owned().into());
    add("url.path", truncated(path, MAX_PATH).to_owned().into());
    if let Some(status) = outcome.status {
        add("http.response.status_code", i64::from(status).into());
    }
    if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
        add("client.address", client.ip().to_string().into());
    }
    if let Some(agent) = request.headers.get(http::header::USER_AGENT) {
        if let Ok(agent) = agent.to_str() {
            add(
                "user_agent.original",
                truncated(agent, MAX_PATH).to_owned().into(),
            );
        }
    }
    if let Some(id) = ctx.request_id.as_ref().and_then(|id| id.to_str().ok()) {
        add("warden.request_id", id.to_owned().into());
    }
    add("warden.code", outcome.code.as_str().into());
    let denied = ctx.refusal.is_some() && ctx.forward.is_none();
    add(
        "warden.decision",
        if denied { "deny" } else { "allow" }.into(),
    );
    identity(
        &mut add,
        agent,
        ctx.credential.as_ref(),
        ctx.user.as_deref(),
    );
    let name = if let Some(call) = &ctx.mcp {
        mcp_call(&mut add, call, method, ctx.refusal.is_none())
    } else if let (Some(call), Some(snapshot)) = (ctx.service, snapshot) {
        let service = &snapshot.providers[call.service].name;
        add("warden.service", service.clone().into());
        format!("{method} {}{service}", super::service::PREFIX)
    } else {
        model_call(&mut add, ctx, provider, method, path)
    };
    if let (Some(provider), None) = (provider, &ctx.mcp) {
        add("warden.provider", provider.name.clone().into());
    }
    if let Some(billed) = outcome.billed {
        add("gen_ai.usage.input_tokens", saturating(billed.input));
        add("gen_ai.usage.output_tokens", saturating(billed.output));
        if billed.cached > 0 {
            add(
                "gen_ai.usage.cache_read.input_tokens",
                saturating(billed.cached),
            );
        }
    }
    if let Some(cost) = outcome.cost {
        add("warden.cost_usd", (cost as f64 / 1_000_000.0).into());
    }
    if let Some(translation) = &ctx.translation {
        add("warden.translation", translation.direction().name().into());
    }
    if let Some(action) = &ctx.action {
        add("warden.action", action.name.clone().into());
        add("warden.action.verified", action.verified.into());
    }
    span.end(Ending {
        name,
        attributes,
        error: (outcome.code != Code::Ok).then(|| outcome.code.as_str()),
        first_chunk: ctx.upstream.first_chunk,
    });
}

/// An MCP request: its attributes, and a name drawn from a bounded set — the method when it is
/// one Warden judged and admitted, a tool only when the agent's policy names it (a hostile
/// agent cannot mint span names), else the endpoint.
fn mcp_call(
    add: &mut impl FnMut(&'static str, Value),
    call: &McpCall,
    method: &str,
    admitted: bool,
) -> String {
    add("warden.mcp.server", call.server.clone().into());
    let endpoint = || format!("{method} {}{}", crate::mcp::PREFIX, call.server);
    let Some(rpc) = &call.method else {
        return endpoint();
    };
    add("mcp.method.name", rpc.clone().into());
    if let Some((tool, _)) = &call.tool {
        add("gen_ai.operation.name", "execute_tool".into());
        add("gen_ai.tool.name", tool.clone().into());
    }
    match &call.tool {
        Some((tool, entry)) if entry != OTHER_TOOL => format!("{rpc} {tool}"),
        _ if rpc == "tools/call" => rpc.clone(),
        _ if admitted && !crate::mcp::is_notification(rpc) => rpc.clone(),
        _ => endpoint(),
    }
}

/// A call to a provider: its GenAI attributes, and its name (`chat gpt-4o`; `chat` when
/// refused before the model was read; `POST /v1/verify` for Warden's own endpoints).
fn model_call(
    add: &mut impl FnMut(&'static str, Value),
    ctx: &RequestCtx,
    provider: Option<&Provider>,
    method: &str,
    path: &str,
) -> String {
    let operation = operation(path);
    if let Some(operation) = operation {
        add("gen_ai.operation.name", operation.into());
    }
    let Some(model) = ctx.model.as_deref() else {
        return match operation {
            Some(operation) => operation.to_owned(),
            None if [verify::PATH, token::PATH, "/v1/models"].contains(&path) => {
                format!("{method} {path}")
            }
            None => method.to_owned(),
        };
    };
    let model = truncated(model, MAX_MODEL);
    add("gen_ai.request.model", model.to_owned().into());
    if let Some(cap) = ctx.max_tokens {
        add("gen_ai.request.max_tokens", saturating(cap));
    }
    if let Some(provider) = provider {
        add("gen_ai.provider.name", provider_name(provider, path).into());
    }
    if let Some(answered) = ctx.upstream.meter.response_model() {
        let answered = truncated(answered, MAX_MODEL).to_owned();
        add("gen_ai.response.model", answered.into());
    }
    // The model names the span once it passed the agent's allowlist (it was routed): a model
    // the agent may not use is an attribute only.
    match (operation, ctx.provider.is_some()) {
        (Some(operation), true) => format!("{operation} {model}"),
        (Some(operation), false) => operation.to_owned(),
        (None, true) => format!("{method} {model}"),
        (None, false) => method.to_owned(),
    }
}

/// Who asked: the agent, its team, the end user, and a delegated token's actors.
pub fn identity(
    add: &mut impl FnMut(&'static str, Value),
    agent: Option<&Agent>,
    credential: Option<&Credential>,
    user: Option<&str>,
) {
    if let Some(agent) = agent {
        add("warden.agent", agent.id.clone().into());
        if let Some(owner) = &agent.owner {
            add("warden.team", owner.clone().into());
        }
    }
    if let Some(credential) = credential {
        add("warden.credential.kind", credential.kind().into());
        if let Some(delegation) = credential.delegation() {
            let actors: Vec<StringValue> = delegation
                .actors
                .iter()
                .map(|a| StringValue::from(a.to_string()))
                .collect();
            add("warden.actors", Value::Array(Array::String(actors)));
        }
    }
    if let Some(user) = user {
        add("warden.user", user.to_owned().into());
    }
}

/// `gen_ai.operation.name` of a model call, by the agent's path.
fn operation(path: &str) -> Option<&'static str> {
    let conversation = ["/chat/completions", "/messages", "/responses"];
    if conversation.iter().any(|end| path.ends_with(end)) {
        Some("chat")
    } else if path.ends_with("/completions") {
        Some("text_completion")
    } else if path.ends_with("/embeddings") {
        Some("embeddings")
    } else {
        None
    }
}

/// `gen_ai.provider.name`: the API the provider was spoken to in (`openai` covers every
/// OpenAI-compatible server); Warden's name for the provider is `warden.provider`.
fn provider_name(provider: &Provider, path: &str) -> &'static str {
    match provider.api {
        WireApi::OpenAi => "openai",
        WireApi::Anthropic => "anthropic",
        WireApi::AsSent if path.ends_with("/messages") => "anthropic",
        WireApi::AsSent => "openai",
    }
}

fn saturating(tokens: u64) -> Value {
    Value::I64(i64::try_from(tokens).unwrap_or(i64::MAX))
}
