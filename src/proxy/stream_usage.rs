//! Exact usage on OpenAI-style streams the client did not ask usage for.
//!
//! A chat or text completion stream reports its tokens only when the request sets
//! `stream_options.include_usage`. Without it, a budget could only guess. So Warden asks the
//! provider for usage itself ([`inject_include_usage`]) and hides the extra chunk it brings
//! ([`UsageChunkFilter`]): the client sees exactly the stream it asked for, and Warden meters
//! the real count.

use bytes::Bytes;
use memchr::memmem;
use serde::Deserialize;

/// Paths whose streams report usage only on request (`stream_options.include_usage`).
const USAGE_ON_REQUEST: &[&str] = &["/v1/chat/completions", "/v1/completions"];

/// What the request says about stream usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// The `stream_options` key is in the body (an object, or `null`).
    pub present: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

/// `stream_options` as the body probe reads it (other members ignored).
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptionsProbe {
    #[serde(default)]
    include_usage: Option<bool>,
}

impl From<Option<Option<StreamOptionsProbe>>> for StreamOptions {
    /// From the key's presence and its value (`Some(None)`: `"stream_options": null`).
    fn from(probe: Option<Option<StreamOptionsProbe>>) -> Self {
        StreamOptions {
            present: probe.is_some(),
            include_usage: probe
                .flatten()
                .and_then(|p| p.include_usage)
                .unwrap_or(false),
        }
    }
}

/// Reads a member that may be `null` as `Some(None)` (serde's default reads `null` as absent):
/// Warden must know the key is there to rewrite it rather than add a second one.
pub fn present_or_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Whether Warden must ask for usage on this request: a streaming completion on a path whose
/// streams report usage only on request, without `include_usage`.
pub fn needs_injection(path: &str, stream: bool, options: StreamOptions) -> bool {
    stream && !options.include_usage && USAGE_ON_REQUEST.contains(&path)
}

/// The body with `stream_options.include_usage` set to true. A body without `stream_options`
/// gets it as its first member (the rest is forwarded byte for byte); one whose
/// `stream_options` says otherwise (or is `null`) is re-serialized with it set, so the
/// provider reads exactly one `stream_options`.
pub fn inject_include_usage(body: &[u8], options: StreamOptions) -> Option<Bytes> {
    if !options.present {
        let open = body.iter().position(|b| *b == b'{')?;
        let mut out = Vec::with_capacity(body.len() + 40);
        out.extend_from_slice(&body[..=open]);
        out.extend_from_slice(br#""stream_options":{"include_usage":true},"#);
        out.extend_from_slice(&body[open + 1..]);
        return Some(Bytes::from(out));
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let options = value.get_mut("stream_options")?;
    if options.is_null() {
        *options = serde_json::Value::Object(serde_json::Map::new());
    }
    options
        .as_object_mut()?
        .insert("include_usage".into(), serde_json::Value::Bool(true));
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

/// Removes the usage-only chunk (`"choices":[]` with `usage`) from an SSE stream, passing every
/// other event through as it completes.
#[derive(Debug, Default)]
pub struct UsageChunkFilter {
    /// Bytes of an event not complete yet.
    pending: Vec<u8>,
}

impl UsageChunkFilter {
    /// Filters one body chunk in place (`None` when it only held part of an event).
    pub fn filter(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        let chunk = body.take().unwrap_or_default();
        let fast = self.pending.is_empty()
            && chunk.ends_with(b"\n\n")
            && memmem::find(&chunk, b"\"usage\"").is_none();
        if fast {
            *body = (!chunk.is_empty()).then_some(chunk);
            return;
        }
        self.pending.extend_from_slice(&chunk);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut start = 0;
        while let Some(len) = event_len(&self.pending[start..]) {
            let event = &self.pending[start..start + len];
            if !is_usage_only(event) {
                out.extend_from_slice(event);
            }
            start += len;
        }
        self.pending.drain(..start);
        if end_of_stream {
            out.append(&mut self.pending);
        }
        *body = (!out.is_empty()).then(|| Bytes::from(out));
    }
}

/// Length of the first complete event (through its blank line), if there is one.
fn event_len(bytes: &[u8]) -> Option<usize> {
    let lf = memmem::find(bytes, b"\n\n").map(|at| at + 2);
    let crlf = memmem::find(bytes, b"\n\r\n").map(|at| at + 3);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether an SSE event is the chunk `include_usage` adds: no choices, a usage object.
fn is_usage_only(event: &[u8]) -> bool {
    if memmem::find(event, b"\"usage\"").is_none() {
        return false;
    }
    let mut data = Vec::new();
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(value) = line.strip_prefix(b"data:") {
            data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
        }
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&data) else {
        return false;
    };
    value["choices"].as_array().is_some_and(Vec::is_empty) && value["usage"].is_object()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(present: bool, include_usage: bool) -> StreamOptions {
        StreamOptions {
            present,
            include_usage,
        }
    }

    #[test]
    fn injection_only_where_usage_must_be_asked_for() {
        let none = options(false, false);
        assert!(needs_injection("/v1/chat/completions", true, none));
        assert!(!needs_injection("/v1/chat/completions", false, none));
        assert!(!needs_injection(
            "/v1/chat/completions",
            true,
            options(true, true)
        ));
        assert!(!needs_injection("/v1/messages", true, none));
    }

    #[test]
    fn include_usage_is_added_or_set() {
        let body = br#" {"model":"m","stream":true}"#;
        let out = inject_include_usage(body, options(false, false)).unwrap();
        assert_eq!(
            &out[..],
            br#" {"stream_options":{"include_usage":true},"model":"m","stream":true}"#
        );
        let body = br#"{"model":"m","stream_options":{"include_usage":false,"x":1}}"#;
        let out = inject_include_usage(body, options(true, false)).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["stream_options"]["include_usage"], true);
        assert_eq!(value["stream_options"]["x"], 1);
        let body = br#"{"model":"m","stream":true,"stream_options":null}"#;
        let out = inject_include_usage(body, options(true, false)).unwrap();
        assert_eq!(
            memmem::find_iter(&out, b"stream_options").count(),
            1,
            "one key, not the client's null beside Warden's"
        );
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["stream_options"]["include_usage"], true);
    }

    #[test]
    fn the_usage_chunk_is_removed_however_the_stream_is_cut() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n",
            "data: [DONE]\n\n"
        )
        .as_bytes();
        let expected = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
            "data: [DONE]\n\n"
        )
        .as_bytes();
        for size in [1, 2, 7, 30, stream.len()] {
            let mut filter = UsageChunkFilter::default();
            let mut seen = Vec::new();
            let pieces: Vec<&[u8]> = stream.chunks(size).collect();
            for (i, piece) in pieces.iter().enumerate() {
                let mut body = Some(Bytes::copy_from_slice(piece));
                filter.filter(&mut body, i + 1 == pieces.len());
                if let Some(out) = body {
                    seen.extend_from_slice(&out);
                }
            }
            assert_eq!(seen, expected, "cut every {size} bytes");
        }
    }
}
