//! Refusals on `/mcp/<server>` as MCP clients read them: JSON-RPC error responses whose
//! `message` names the tool (or resource, prompt) and the rule, and whose `data.warden_error`
//! is the SPEC code, so an SDK surfaces them as the server's own errors and the model reads
//! why. Policy refusals of a call are answered with status 200, inside the protocol; what
//! refuses the HTTP request itself (credentials, the server, the session) keeps its status.

use serde_json::{json, Value};

use super::error::{shown, Refusal};
use crate::mcp::{codes, McpDenial};

/// MCP's code for a resource that does not exist.
const RESOURCE_NOT_FOUND: i64 = -32002;
/// A JSON-RPC server error: a limit of the agent's, not of the request.
const LIMIT_REACHED: i64 = -32000;

impl Refusal {
    /// The JSON-RPC error response for this refusal.
    pub fn json_rpc_body(&self) -> Value {
        let (id, code) = match self {
            Refusal::Mcp(refused) => (refused.id.clone(), denial_code(&refused.why)),
            Refusal::InvalidMcp(refused) => (refused.id.clone(), refused.why.code),
            Refusal::InvalidJson(_) => (Value::Null, codes::PARSE_ERROR),
            Refusal::McpServerNotFound(_) => (Value::Null, codes::METHOD_NOT_FOUND),
            Refusal::McpSessionNotFound => (Value::Null, codes::INVALID_REQUEST),
            _ => (Value::Null, LIMIT_REACHED),
        };
        let mut data = json!({"warden_error": self.code().as_str()});
        if let Some(wait) = self.retry_after() {
            data["retry_after"] = json!(wait.as_secs().max(1));
        }
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": code, "message": self.message(), "data": data},
        })
    }
}

/// The JSON-RPC code of a policy refusal: what MCP servers answer for a tool, prompt or
/// argument they do not accept, or a resource they do not have.
fn denial_code(denial: &McpDenial) -> i64 {
    match denial {
        McpDenial::ToolNotAllowed { .. }
        | McpDenial::ArgumentNotAllowed { .. }
        | McpDenial::PromptNotAllowed { .. } => codes::INVALID_PARAMS,
        McpDenial::ResourceNotAllowed { .. } => RESOURCE_NOT_FOUND,
        McpDenial::ToolLimitExhausted { .. } | McpDenial::FleetUnavailable => LIMIT_REACHED,
    }
}

/// What an MCP refusal says to the model that made the call: the tool (or resource, prompt)
/// and the rule.
pub(super) fn mcp_message(denial: &McpDenial) -> String {
    match denial {
        McpDenial::ToolNotAllowed { tool } => format!(
            "tool {} is not available to this agent (not in its `mcp` tools)",
            shown(tool)
        ),
        McpDenial::ArgumentNotAllowed {
            tool,
            argument,
            rule,
        } => format!(
            "tool {} refused argument {}: {rule}",
            shown(tool),
            shown(argument)
        ),
        McpDenial::ToolLimitExhausted {
            tool,
            limit,
            retry_after,
        } => format!(
            "tool {} has reached this agent's {limit} for today; retry in {retry_after} s",
            shown(tool)
        ),
        McpDenial::ResourceNotAllowed { uri } => format!(
            "resource {} is not available to this agent (not in its `mcp` resources)",
            shown(uri)
        ),
        McpDenial::PromptNotAllowed { name } => format!(
            "prompt {} is not available to this agent (not in its `mcp` prompts)",
            shown(name)
        ),
        McpDenial::FleetUnavailable => Refusal::FleetUnavailable.message(),
    }
}
