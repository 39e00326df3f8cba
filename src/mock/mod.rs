//! The built-in mock provider (`kind: mock`): deterministic OpenAI- and Anthropic-shaped
//! answers with `usage`, as JSON or SSE, for the demo, tests and policy dry runs.
//!
//! It is served on a private Unix socket inside the Warden process and reached through the
//! normal proxy path, so a mock request exercises exactly what a real provider request does.
//! Replies echo the last user message and count tokens as whitespace-separated words.

use async_trait::async_trait;
use bytes::BytesMut;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

pub mod mcp;

/// Where the mock MCP server is served (`mcp_servers.<name>: {kind: mock}`).
pub use mcp::PATH as MCP_PATH;

/// The mock provider service.
pub struct MockProvider;

/// Request bodies larger than this are refused by the mock (Warden's own limit applies first).
const MAX_BODY: usize = 64 * 1024 * 1024;

#[async_trait]
impl ServeHttp for MockProvider {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let mut body = BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_BODY => {
                    body.extend_from_slice(&chunk)
                }
                Ok(Some(_)) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
                Ok(None) => break,
                Err(_) => return error(StatusCode::BAD_REQUEST, "cannot read body"),
            }
        }
        if path == MCP_PATH {
            return mcp::answer(&session.req_header().method, &body);
        }
        let Ok(request) = serde_json::from_slice::<Value>(&body) else {
            return error(StatusCode::BAD_REQUEST, "body is not JSON");
        };
        let model = request["model"].as_str().unwrap_or("mock").to_string();
        let stream = request["stream"].as_bool().unwrap_or(false);
        let prompt = prompt_text(&request);
        let input_tokens = words(&prompt);
        let reply = format!("Mock reply from Warden to: {}", truncate(&prompt, 200));
        let output_tokens = words(&reply);
        let include_usage = request["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false);
        match (path.as_str(), stream) {
            ("/v1/chat/completions", false) => {
                json_ok(chat(&model, &reply, input_tokens, output_tokens))
            }
            ("/v1/chat/completions", true) => sse_ok(chat_stream(
                &model,
                &reply,
                input_tokens,
                output_tokens,
                include_usage,
            )),
            ("/v1/completions", false) => {
                json_ok(completion(&model, &reply, input_tokens, output_tokens))
            }
            ("/v1/embeddings", _) => json_ok(embeddings(&model, &request, input_tokens)),
            ("/v1/messages", false) => {
                json_ok(message(&model, &reply, input_tokens, output_tokens))
            }
            ("/v1/messages", true) => {
                sse_ok(message_stream(&model, &reply, input_tokens, output_tokens))
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "the mock provider does not serve this path",
            ),
        }
    }
}

fn prompt_text(request: &Value) -> String {
    if let Some(messages) = request["messages"].as_array() {
        let last = messages.iter().rev().find(|m| m["role"] == "user");
        return match last.map(|m| &m["content"]) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
    }
    match &request["prompt"] {
        Value::String(s) => s.clone(),
        _ => match &request["input"] {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        },
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

fn chat(model: &str, reply: &str, input: u64, output: u64) -> Value {
    json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}
    })
}

fn chat_stream(
    model: &str,
    reply: &str,
    input: u64,
    output: u64,
    include_usage: bool,
) -> Vec<Value> {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        })
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for word in reply.split_inclusive(' ') {
        events.push(chunk(json!({"content": word}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        events.push(json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
            "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}
        }));
    }
    events
}

fn completion(model: &str, reply: &str, input: u64, output: u64) -> Value {
    json!({
        "id": "cmpl-mock", "object": "text_completion", "created": 0, "model": model,
        "choices": [{"index": 0, "text": reply, "finish_reason": "stop", "logprobs": null}],
        "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}
    })
}

fn embeddings(model: &str, request: &Value, input: u64) -> Value {
    let inputs = match &request["input"] {
        Value::Array(items) => items.len().max(1),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| {
            let vector: Vec<f64> = (0..8)
                .map(|d| (((i * 8 + d) % 7) as f64 - 3.0) / 10.0)
                .collect();
            json!({"object": "embedding", "index": i, "embedding": vector})
        })
        .collect();
    json!({"object": "list", "model": model, "data": data, "usage": {"prompt_tokens": input, "total_tokens": input}})
}

fn message(model: &str, reply: &str, input: u64, output: u64) -> Value {
    json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": reply}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": output}
    })
}

fn message_stream(model: &str, reply: &str, input: u64, output: u64) -> Vec<Value> {
    let mut events = vec![
        json!({"type": "message_start", "message": {
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ];
    for word in reply.split_inclusive(' ') {
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": output}}));
    events.push(json!({"type": "message_stop"}));
    events
}

fn json_ok(body: Value) -> Response<Vec<u8>> {
    respond(
        StatusCode::OK,
        "application/json",
        body.to_string().into_bytes(),
    )
}

/// Renders events as SSE: Anthropic events (with `type`) get an `event:` line; OpenAI streams
/// end with `data: [DONE]`.
fn sse_ok(events: Vec<Value>) -> Response<Vec<u8>> {
    let mut out = String::new();
    let anthropic = events.first().is_some_and(|e| e.get("type").is_some());
    for event in &events {
        if let Some(kind) = event["type"].as_str() {
            out.push_str("event: ");
            out.push_str(kind);
            out.push('\n');
        }
        out.push_str("data: ");
        out.push_str(&event.to_string());
        out.push_str("\n\n");
    }
    if !anthropic {
        out.push_str("data: [DONE]\n\n");
    }
    respond(StatusCode::OK, "text/event-stream", out.into_bytes())
}

fn error(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    let body =
        json!({"error": {"message": message, "type": "invalid_request_error", "code": null}});
    respond(status, "application/json", body.to_string().into_bytes())
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
