//! What an MCP server answers, as the agent may see it: lists of tools, resources, resource
//! templates and prompts cut to the agent's grant, in a JSON answer or in every event of an
//! SSE stream (a POST's answer, the GET stream, a resumed stream: a list is cut wherever it
//! arrives); and whether a tool call's result says `isError`, for the audit record.
//!
//! Filtering fails closed: a JSON answer to a list request too large to read whole becomes a
//! JSON-RPC error, an SSE event too large to read is dropped.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::grant::McpGrant;
use crate::sse::{self, Piece};

/// The JSON-RPC error code of an answer Warden could not filter.
const INTERNAL_ERROR: i64 = -32603;

/// Filters one answer's body as it passes.
#[derive(Debug)]
pub struct AnswerFilter {
    framing: Framing,
    limit: usize,
    /// `isError` of a tool call's result, once seen.
    pub is_error: Option<bool>,
}

#[derive(Debug)]
enum Framing {
    /// A JSON answer, gathered whole (it is one message) and filtered at its end.
    Json(Vec<u8>),
    /// An SSE stream, filtered event by event.
    Sse(sse::Decoder),
    /// Nothing to filter (a JSON answer to a request that lists nothing).
    Pass,
    /// The answer was replaced: what is left of it is not sent.
    Replaced,
}

impl AnswerFilter {
    /// A filter for an answer of `content_type`; `whole` reads a JSON answer whole (to a list
    /// request, or a tool call whose `isError` is recorded). Events and answers over `limit`
    /// bytes are not read.
    pub fn new(content_type: Option<&[u8]>, whole: bool, limit: usize) -> Self {
        let sse = content_type
            .is_some_and(|t| t.len() >= 17 && t[..17].eq_ignore_ascii_case(b"text/event-stream"));
        let framing = match (sse, whole) {
            (true, _) => Framing::Sse(sse::Decoder::new(limit)),
            (false, true) => Framing::Json(Vec::new()),
            (false, false) => Framing::Pass,
        };
        AnswerFilter {
            framing,
            limit,
            is_error: None,
        }
    }

    /// Whether the body may change length (its `Content-Length` no longer holds).
    pub fn rewrites(&self) -> bool {
        !matches!(self.framing, Framing::Pass)
    }

    /// Filters `chunk` for `grant` (`None` from here on when the body is held back).
    pub fn filter(&mut self, grant: &McpGrant, chunk: &mut Option<Bytes>, end: bool) {
        let is_error = &mut self.is_error;
        match &mut self.framing {
            Framing::Pass => {}
            Framing::Replaced => *chunk = None,
            Framing::Json(gathered) => {
                if let Some(bytes) = chunk.take() {
                    if gathered.len() + bytes.len() > self.limit {
                        gathered.clear();
                        *chunk = Some(too_large());
                        self.framing = Framing::Replaced;
                        return;
                    }
                    gathered.extend_from_slice(&bytes);
                }
                if end {
                    *chunk = Some(Bytes::from(filter_json(grant, gathered, is_error)));
                }
            }
            Framing::Sse(decoder) => {
                let mut out = Vec::new();
                let mut emit = |piece: Piece<'_>| match piece {
                    Piece::Event(event) | Piece::Unterminated(event) => {
                        filter_event(grant, event, is_error, &mut out);
                    }
                    Piece::Oversized(_) => {}
                };
                if let Some(bytes) = chunk.take() {
                    decoder.feed(&bytes, &mut emit);
                }
                if end {
                    decoder.finish(&mut emit);
                }
                *chunk = (!out.is_empty() || end).then(|| Bytes::from(out));
            }
        }
    }
}

/// A JSON answer, filtered; unchanged when it is not a message Warden can read.
fn filter_json(grant: &McpGrant, body: &[u8], is_error: &mut Option<bool>) -> Vec<u8> {
    let Ok(mut message) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    if filter_message(grant, &mut message, is_error) {
        serde_json::to_vec(&message).unwrap_or_else(|_| body.to_vec())
    } else {
        body.to_vec()
    }
}

/// One SSE event, written to `out` filtered (its `data` replaced when a list in it was cut).
fn filter_event(
    grant: &McpGrant,
    event: sse::Event<'_>,
    is_error: &mut Option<bool>,
    out: &mut Vec<u8>,
) {
    let parsed = event
        .data()
        .and_then(|data| serde_json::from_slice::<Value>(&data).ok());
    let Some(mut message) = parsed else {
        out.extend_from_slice(event.0);
        return;
    };
    if !filter_message(grant, &mut message, is_error) {
        out.extend_from_slice(event.0);
        return;
    }
    let Ok(data) = serde_json::to_vec(&message) else {
        return;
    };
    for line in event.0.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() && !line.starts_with(b"data:") {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\n\n");
}

/// Cuts the lists in a message's `result` to `grant`, and notes a tool result's `isError`.
/// Returns whether the message must be written anew (it held a list).
fn filter_message(grant: &McpGrant, message: &mut Value, is_error: &mut Option<bool>) -> bool {
    let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) else {
        return false;
    };
    if let Some(flag) = result.get("isError").and_then(Value::as_bool) {
        *is_error = Some(flag);
    }
    let mut listed = false;
    listed |= retain(result, "tools", "name", |name| grant.tool(name).is_some());
    listed |= retain(result, "prompts", "name", |name| grant.allows_prompt(name));
    listed |= retain(result, "resources", "uri", |uri| grant.allows_resource(uri));
    listed |= retain(result, "resourceTemplates", "uriTemplate", |t| {
        grant.allows_resource(t)
    });
    listed
}

/// Keeps the entries of `result[list]` whose `key` is a string `allowed` admits; entries
/// without one go too. Returns whether `result` has that list.
fn retain(
    result: &mut Map<String, Value>,
    list: &str,
    key: &str,
    allowed: impl Fn(&str) -> bool,
) -> bool {
    match result.get_mut(list) {
        Some(Value::Array(entries)) => {
            entries.retain(|entry| entry.get(key).and_then(Value::as_str).is_some_and(&allowed));
            true
        }
        Some(_) => {
            result.remove(list);
            true
        }
        None => false,
    }
}

/// The answer to a list request too large to filter.
fn too_large() -> Bytes {
    let error = serde_json::json!({
        "jsonrpc": "2.0",
        "id": Value::Null,
        "error": {
            "code": INTERNAL_ERROR,
            "message": "the MCP server's answer is too large for Warden to filter",
        },
    });
    Bytes::from(error.to_string())
}
