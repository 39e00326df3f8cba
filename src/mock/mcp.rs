//! The built-in mock MCP server (`mcp_servers.<name>: {kind: mock}`): a small CRM with four
//! tools, two resources and a prompt, speaking Streamable HTTP in the handshake revisions
//! (`initialize` opens a session; JSON answers). Deterministic, for the demo and policy dry
//! runs; it echoes what it was asked, so a refused call visibly never reached it.

use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

/// The path the mock MCP server is served at, on the mock provider's socket.
pub const PATH: &str = "/mcp";

/// The protocol revision the mock answers `initialize` with when the client asks for another.
const REVISION: &str = "2025-11-25";

/// The answer to one Streamable HTTP request.
pub fn answer(method: &Method, body: &[u8]) -> Response<Vec<u8>> {
    if method == Method::DELETE {
        return respond(StatusCode::OK, None, Vec::new());
    }
    if method != Method::POST {
        return respond(StatusCode::METHOD_NOT_ALLOWED, None, Vec::new());
    }
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return rpc_error(Value::Null, -32700, "not JSON");
    };
    let id = message.get("id").cloned();
    let method = message["method"].as_str().unwrap_or_default();
    let params = &message["params"];
    let Some(id) = id else {
        // A notification (or a response): accepted, nothing to answer.
        return respond(StatusCode::ACCEPTED, None, Vec::new());
    };
    let result = match method {
        "initialize" => {
            let asked = params["protocolVersion"].as_str().unwrap_or(REVISION);
            let revision = if asked == "2025-06-18" {
                asked
            } else {
                REVISION
            };
            let result = json!({
                "protocolVersion": revision,
                "capabilities": {"tools": {}, "resources": {}, "prompts": {}},
                "serverInfo": {"name": "warden-mock-crm", "version": env!("CARGO_PKG_VERSION")},
            });
            let session = uuid::Uuid::new_v4().to_string();
            return respond(StatusCode::OK, Some(&session), rpc_result(&id, result));
        }
        "ping" => json!({}),
        "tools/list" => json!({"tools": tools()}),
        "tools/call" => match call(params) {
            Some(text) => json!({"content": [{"type": "text", "text": text}], "isError": false}),
            None => return rpc_error(id, -32602, "unknown tool"),
        },
        "resources/list" => json!({"resources": [
            {"uri": "crm://customers/42", "name": "Ada Lovelace", "mimeType": "text/plain"},
            {"uri": "crm://internal/ledger", "name": "Ledger", "mimeType": "text/plain"},
        ]}),
        "resources/read" => {
            let uri = params["uri"].as_str().unwrap_or_default();
            json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": format!("contents of {uri}")}]})
        }
        "prompts/list" => {
            json!({"prompts": [{"name": "greeting", "description": "Greets a customer"}]})
        }
        "prompts/get" => {
            json!({"messages": [{"role": "user", "content": {"type": "text", "text": "Greet the customer warmly."}}]})
        }
        _ => return rpc_error(id, -32601, "method not found"),
    };
    respond(StatusCode::OK, None, rpc_result(&id, result))
}

/// The mock's tools, with their input schemas.
fn tools() -> Value {
    let string = json!({"type": "string"});
    let schema = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required});
    json!([
        {"name": "lookup_customer", "description": "Looks a customer up by id",
         "inputSchema": schema(json!({"id": string}), &["id"])},
        {"name": "send_email", "description": "Sends an email",
         "inputSchema": schema(json!({"to": string, "subject": string, "body": string}), &["to", "body"])},
        {"name": "refund", "description": "Refunds a customer",
         "inputSchema": schema(json!({"customer_id": string, "amount": {"type": "number"}}), &["customer_id", "amount"])},
        {"name": "delete_customer", "description": "Deletes a customer",
         "inputSchema": schema(json!({"id": string}), &["id"])},
    ])
}

/// What a tool call did, in words; `None` for an unknown tool.
fn call(params: &Value) -> Option<String> {
    let arguments = &params["arguments"];
    let text = |key: &str| {
        arguments[key]
            .as_str()
            .map_or_else(String::new, str::to_owned)
    };
    Some(match params["name"].as_str()? {
        "lookup_customer" => format!("customer {}: Ada Lovelace, ada@example.com", text("id")),
        "send_email" => format!("email sent to {}", text("to")),
        "refund" => format!(
            "refunded {} to customer {}",
            arguments["amount"],
            text("customer_id")
        ),
        "delete_customer" => format!("customer {} deleted", text("id")),
        _ => return None,
    })
}

fn rpc_result(id: &Value, result: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
        .to_string()
        .into_bytes()
}

fn rpc_error(id: Value, code: i64, message: &str) -> Response<Vec<u8>> {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    respond(StatusCode::OK, None, body.to_string().into_bytes())
}

fn respond(status: StatusCode, session: Option<&str>, body: Vec<u8>) -> Response<Vec<u8>> {
    let has_body = !body.is_empty();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if has_body {
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    if let Some(session) = session.and_then(|s| http::HeaderValue::from_str(s).ok()) {
        headers.insert("mcp-session-id", session);
    }
    response
}
