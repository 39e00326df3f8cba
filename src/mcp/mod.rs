//! The MCP gateway's domain: what an agent may do on an MCP server, decided over the snapshot.
//!
//! `mcp_servers:` compile as providers that serve no model ([`spec`]); an agent's `mcp:`
//! grants compile to [`grant::McpGrant`]s. A request's body is read exactly as the server will
//! read it ([`message`]), classified by method ([`classify`]), and judged ([`rules`]); its
//! answer is cut to what the agent may see ([`answer`]). Sessions are bound to the agent that
//! opened them ([`sessions`]). Nothing here does I/O or knows about the proxy.

pub mod answer;
pub mod grant;
pub mod message;
pub mod rules;
pub mod sessions;
pub mod spec;

use base64::Engine as _;
use http::HeaderMap;
use serde_json::{Map, Value};

pub use grant::McpGrant;
pub use message::Message;
pub use rules::McpDenial;

/// Where MCP servers are reached on the proxy listener: `/mcp/<server>`.
pub const PREFIX: &str = "/mcp/";

/// What Warden does with a request, by its method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Request<'m> {
    /// `tools/call`: the tool's rules, then its quotas, before it leaves.
    ToolCall {
        name: &'m str,
        arguments: Option<&'m Map<String, Value>>,
    },
    /// A list (`tools/list`, `resources/list`, `resources/templates/list`, `prompts/list`):
    /// forwarded, its answer cut to the grant.
    List,
    /// Any other method of the protocol: forwarded as sent.
    Other,
}

/// Why a request is not one Warden forwards, as a JSON-RPC error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: i64,
    pub message: String,
}

/// JSON-RPC's codes for what Warden refuses before judging.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    /// MCP 2026-07-28's `HEADER_MISMATCH`: routing headers that disagree with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
}

/// Methods a client may send that act on nothing a grant names: forwarded as sent.
const PLAIN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "logging/setLevel",
    "subscriptions/listen",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
];

/// Methods whose answer lists what the grant cuts.
const LIST_METHODS: &[&str] = &[
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
];

/// Classifies request `method` and judges what it names against `grant`. An unknown method
/// is refused: a gateway that forwarded methods it cannot judge would not be closed by
/// default.
pub fn classify<'m>(
    grant: &McpGrant,
    method: &str,
    params: Option<&'m Map<String, Value>>,
) -> Result<Request<'m>, Result<McpDenial, Invalid>> {
    let text = |key: &str| params.and_then(|p| p.get(key)).and_then(Value::as_str);
    let invalid = |message: String| {
        Err(Err(Invalid {
            code: codes::INVALID_PARAMS,
            message,
        }))
    };
    match method {
        "tools/call" => {
            let Some(name) = text("name") else {
                return invalid("`tools/call` needs a string `name`".into());
            };
            let arguments = match params.and_then(|p| p.get("arguments")) {
                None | Some(Value::Null) => None,
                Some(Value::Object(arguments)) => Some(arguments),
                Some(_) => return invalid("`arguments` of `tools/call` is an object".into()),
            };
            rules::tool_rule(grant, name).map_err(Ok)?;
            Ok(Request::ToolCall { name, arguments })
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let Some(uri) = text("uri") else {
                return invalid(format!("`{method}` needs a string `uri`"));
            };
            resource(grant, uri)?;
            Ok(Request::Other)
        }
        "prompts/get" => {
            let Some(name) = text("name") else {
                return invalid("`prompts/get` needs a string `name`".into());
            };
            prompt(grant, name)?;
            Ok(Request::Other)
        }
        "completion/complete" => {
            let reference = params.and_then(|p| p.get("ref"));
            let field = |key: &str| reference.and_then(|r| r.get(key)).and_then(Value::as_str);
            match (field("type"), field("name"), field("uri")) {
                (Some("ref/prompt"), Some(name), _) => prompt(grant, name)?,
                (Some("ref/resource"), _, Some(uri)) => resource(grant, uri)?,
                _ => {
                    return invalid("`completion/complete` needs a prompt or resource `ref`".into())
                }
            }
            Ok(Request::Other)
        }
        m if LIST_METHODS.contains(&m) => Ok(Request::List),
        m if PLAIN_METHODS.contains(&m) => Ok(Request::Other),
        _ => Err(Err(Invalid {
            code: codes::METHOD_NOT_FOUND,
            message: format!(
                "Warden does not forward the method `{}`",
                method.chars().take(64).collect::<String>()
            ),
        })),
    }
}

fn resource(grant: &McpGrant, uri: &str) -> Result<(), Result<McpDenial, Invalid>> {
    if grant.allows_resource(uri) {
        Ok(())
    } else {
        Err(Ok(McpDenial::ResourceNotAllowed {
            uri: uri.to_owned(),
        }))
    }
}

fn prompt(grant: &McpGrant, name: &str) -> Result<(), Result<McpDenial, Invalid>> {
    if grant.allows_prompt(name) {
        Ok(())
    } else {
        Err(Ok(McpDenial::PromptNotAllowed {
            name: name.to_owned(),
        }))
    }
}

/// Whether a client notification `method` is one Warden forwards (MCP's notifications only).
pub fn is_notification(method: &str) -> bool {
    method.starts_with("notifications/")
}

/// MCP's routing headers: Streamable HTTP's session and version, 2026-07-28's method and name.
pub const ROUTING_HEADERS: &[&str] = &[
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
];

/// Refuses routing headers a server could read differently from the body Warden judged: one
/// sent twice, an `Mcp-Method` other than the body's method, an `Mcp-Name` other than the name
/// (or URI) the body's method acts on.
pub fn check_routing_headers(headers: &HeaderMap, message: &Message) -> Result<(), Invalid> {
    let mismatch = |message: String| Invalid {
        code: codes::HEADER_MISMATCH,
        message,
    };
    for name in ROUTING_HEADERS {
        if headers.get_all(*name).iter().nth(1).is_some() {
            return Err(mismatch(format!("`{name}` is sent more than once")));
        }
    }
    let (method, params) = match message {
        Message::Request { method, params, .. } => (Some(method.as_str()), params.as_ref()),
        Message::Notification { method } => (Some(method.as_str()), None),
        Message::Response => (None, None),
    };
    if let Some(sent) = headers.get("mcp-method") {
        if Some(sent.as_bytes()) != method.map(str::as_bytes) {
            return Err(mismatch(
                "`Mcp-Method` does not match the body's method".into(),
            ));
        }
    }
    if let Some(sent) = headers.get("mcp-name") {
        let key = match method {
            Some("tools/call" | "prompts/get") => "name",
            Some("resources/read") => "uri",
            _ => {
                return Err(mismatch(
                    "`Mcp-Name` is sent with a method that names nothing".into(),
                ))
            }
        };
        let named = params.and_then(|p| p.get(key)).and_then(Value::as_str);
        let decoded = sent.to_str().ok().and_then(decode_header_value);
        if decoded.is_none() || decoded.as_deref() != named {
            return Err(mismatch(format!(
                "`Mcp-Name` does not match the body's `{key}`"
            )));
        }
    }
    Ok(())
}

/// An MCP header value: as sent, or the UTF-8 inside a `=?base64?…?=` sentinel (MCP's encoding
/// of values that are not plain ASCII); `None` when the sentinel does not decode.
fn decode_header_value(value: &str) -> Option<String> {
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Some(value.to_owned());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
