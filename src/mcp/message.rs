//! JSON-RPC messages as an MCP client sends them, read exactly as the server will read them.
//!
//! Warden decides on what it parses here, so anything two readers could read differently is
//! refused: a duplicate key at any depth (one reader takes the first, another the last), a
//! batch (removed from MCP in 2025-06-18), a message that is neither request, notification nor
//! response.

use serde_json::{Map, Value};

/// What a message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request: it has an `id` and a `method`, and the server answers it.
    Request {
        id: Value,
        method: String,
        params: Option<Map<String, Value>>,
    },
    /// A notification: a `method` without an `id`.
    Notification { method: String },
    /// The client's answer to a request of the server (sampling, elicitation, roots).
    Response,
}

/// Why a body is not one message Warden can judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// Not JSON, or JSON two readers could read differently; the text says where.
    Json(String),
    /// A JSON array: a batch.
    Batch,
    /// JSON, but not a JSON-RPC 2.0 message; the text says why.
    NotJsonRpc(&'static str),
}

/// Reads one JSON-RPC message from `body`.
pub fn parse(body: &[u8]) -> Result<Message, Unreadable> {
    let value = crate::json::strict(body).map_err(Unreadable::Json)?;
    let mut object = match value {
        Value::Object(object) => object,
        Value::Array(_) => return Err(Unreadable::Batch),
        _ => return Err(Unreadable::NotJsonRpc("a message is a JSON object")),
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Unreadable::NotJsonRpc("`jsonrpc` must be \"2.0\""));
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => Some(method),
        Some(_) => return Err(Unreadable::NotJsonRpc("`method` must be a string")),
        None => None,
    };
    let params = match object.remove("params") {
        Some(Value::Object(params)) => Some(params),
        Some(Value::Null) | None => None,
        Some(_) => return Err(Unreadable::NotJsonRpc("MCP `params` are an object")),
    };
    let answers = object.contains_key("result") || object.contains_key("error");
    match (method, object.remove("id")) {
        (Some(_), Some(_)) | (Some(_), None) if answers => Err(Unreadable::NotJsonRpc(
            "a message with a `method` has no `result` or `error`",
        )),
        (Some(method), Some(id)) => match id {
            Value::String(_) | Value::Number(_) => Ok(Message::Request { id, method, params }),
            _ => Err(Unreadable::NotJsonRpc(
                "a request `id` is a string or a number",
            )),
        },
        (Some(method), None) => Ok(Message::Notification { method }),
        (None, Some(_)) if answers => Ok(Message::Response),
        (None, _) => Err(Unreadable::NotJsonRpc(
            "neither a request, a notification nor a response",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let nested = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"to":"x","to":"y"}}}"#;
        assert!(
            matches!(parse(nested), Err(Unreadable::Json(e)) if e.contains("duplicate key `to`"))
        );
        let top = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#;
        assert!(matches!(parse(top), Err(Unreadable::Json(_))));
        // Escapes name the same key: `\u0061` is `a`.
        let escaped = br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1,"\u0061":2}}"#;
        assert!(matches!(parse(escaped), Err(Unreadable::Json(_))));
    }

    #[test]
    fn messages_are_classified_or_refused() {
        let request = parse(br#"{"jsonrpc":"2.0","id":"7","method":"tools/list"}"#).unwrap();
        assert!(matches!(request, Message::Request { ref method, .. } if method == "tools/list"));
        let note = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(
            note,
            Message::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#).unwrap(),
            Message::Response
        );
        assert_eq!(parse(b"[{}]"), Err(Unreadable::Batch));
        for bad in [
            &br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#,
            br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#,
            br#"{"jsonrpc":"2.0"}"#,
        ] {
            assert!(
                matches!(parse(bad), Err(Unreadable::NotJsonRpc(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(parse(b"{} x"), Err(Unreadable::Json(_))));
    }
}
