//! Exact usage on OpenAI-style streams the client did not ask usage for.
//!
//! A chat or text completion stream reports its tokens only when the request sets
//! `stream_options.include_usage`. Without it, a budget could only guess. So Warden asks the
//! provider for usage itself ([`inject_include_usage`]) and hides what that brings
//! ([`UsageChunkFilter`]): the extra usage chunk and the `"usage":null` member every other chunk
//! then carries. The client sees exactly the stream it asked for, and Warden meters the real
//! count.

use bytes::Bytes;
use memchr::memmem;
use serde::Deserialize;

use crate::sse::{Decoder, Event, Piece};

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

/// Takes out of an SSE stream what asking for usage added: the usage-only chunk (`"choices":[]`
/// with `usage`) and the `"usage":null` member of every other chunk. Events pass through as they
/// complete; only an event that carries a usage object is parsed.
#[derive(Debug)]
pub struct UsageChunkFilter {
    decoder: Decoder,
}

impl Default for UsageChunkFilter {
    fn default() -> Self {
        UsageChunkFilter {
            decoder: Decoder::new(MAX_FILTERED_EVENT),
        }
    }
}

/// Events longer than this pass unfiltered (a usage chunk is far smaller).
const MAX_FILTERED_EVENT: usize = 1024 * 1024;

impl UsageChunkFilter {
    /// Filters one body chunk in place (`None` when it only held part of an event).
    pub fn filter(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        let chunk = body.take().unwrap_or_default();
        let fast = self.decoder.is_between_events()
            && chunk.ends_with(b"\n\n")
            && memmem::find(&chunk, USAGE_KEY).is_none();
        if fast {
            *body = (!chunk.is_empty()).then_some(chunk);
            return;
        }
        let mut out = Vec::with_capacity(chunk.len());
        let mut keep = |piece: Piece<'_>| match piece {
            Piece::Event(Event(event)) => match null_usage_member(event) {
                Some(member) => {
                    out.extend_from_slice(&event[..member.start]);
                    out.extend_from_slice(&event[member.end..]);
                }
                None if !is_usage_only(Event(event)) => out.extend_from_slice(event),
                None => {}
            },
            Piece::Oversized(bytes) | Piece::Unterminated(Event(bytes)) => {
                out.extend_from_slice(bytes);
            }
        };
        self.decoder.feed(&chunk, &mut keep);
        if end_of_stream {
            self.decoder.finish(&mut keep);
        }
        *body = (!out.is_empty()).then(|| Bytes::from(out));
    }
}

/// The key both additions carry.
const USAGE_KEY: &[u8] = b"\"usage\"";

/// The bytes of a top-level `"usage": null` member in an event, with the comma that joins it
/// to its neighbours, so that cutting them leaves the chunk as the provider writes it when
/// usage was not asked for. Providers put the member last; only the last `"usage"` is looked
/// at, and only where it is a key of the chunk object itself (not of a nested one).
fn null_usage_member(event: &[u8]) -> Option<std::ops::Range<usize>> {
    let key = memmem::rfind(event, USAGE_KEY)?;
    let after_key = key + USAGE_KEY.len();
    let colon = skip_space(event, after_key);
    if event.get(colon) != Some(&b':') {
        return None;
    }
    let value = skip_space(event, colon + 1);
    let value_end = value + 4;
    if event.get(value..value_end) != Some(b"null") {
        return None;
    }
    let next = skip_space(event, value_end);
    let before = event[..key]
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())?;
    if object_depth(event, key) != 1 {
        return None;
    }
    match (event[before], event.get(next)) {
        (b',', Some(b'}' | b',')) => Some(before..value_end),
        (b'{', Some(b',')) => Some(key..next + 1),
        (b'{', Some(b'}')) => Some(key..value_end),
        _ => None,
    }
}

/// The first index at or after `at` that is not JSON whitespace.
fn skip_space(bytes: &[u8], at: usize) -> usize {
    at + bytes[at.min(bytes.len())..]
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count()
}

/// How many objects and arrays are open at `at` (strings skipped): 1 inside the chunk object.
fn object_depth(bytes: &[u8], at: usize) -> usize {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in &bytes[..at] {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    depth
}

/// Whether an SSE event is the chunk `include_usage` adds: no choices, a usage object.
fn is_usage_only(event: Event<'_>) -> bool {
    if memmem::find(event.0, USAGE_KEY).is_none() {
        return false;
    }
    let Some(data) = event.data() else {
        return false;
    };
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
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
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

    #[test]
    fn a_null_usage_member_is_cut_with_its_comma_wherever_it_stands() {
        let cases: &[(&str, &str)] = &[
            (
                "data: {\"id\":\"c\",\"usage\":null}\n\n",
                "data: {\"id\":\"c\"}\n\n",
            ),
            (
                "data: {\"id\": \"c\", \"usage\": null, \"obfuscation\": \"x\"}\n\n",
                "data: {\"id\": \"c\", \"obfuscation\": \"x\"}\n\n",
            ),
            (
                "data: {\"usage\":null,\"id\":\"c\"}\n\n",
                "data: {\"id\":\"c\"}\n\n",
            ),
            ("data: {\"usage\":null}\n\n", "data: {}\n\n"),
            (
                "data: {\"choices\":[{\"usage\":null}]}\n\n",
                "data: {\"choices\":[{\"usage\":null}]}\n\n",
            ),
            (
                "data: {\"text\":\"{\\\"usage\\\":null}\"}\n\n",
                "data: {\"text\":\"{\\\"usage\\\":null}\"}\n\n",
            ),
        ];
        for (event, expected) in cases {
            let mut filter = UsageChunkFilter::default();
            let mut body = Some(Bytes::copy_from_slice(event.as_bytes()));
            filter.filter(&mut body, true);
            assert_eq!(body.as_deref(), Some(expected.as_bytes()), "{event}");
        }
    }
}
