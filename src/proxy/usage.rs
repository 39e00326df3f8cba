//! Token usage read from provider responses as they pass, without holding the stream.
//!
//! JSON responses are kept aside (the chunk itself when the body is one chunk, else a copy, up
//! to a cap) and parsed once complete. SSE streams are cut into lines, read in place (only a
//! line split across chunks is copied); only `data:` lines that mention `"usage"` are parsed. Understood shapes:
//! OpenAI `usage.{prompt,completion}_tokens` (chat, completions, embeddings, and the final
//! stream chunk when `stream_options.include_usage` is set), OpenAI Responses
//! `usage.{input,output}_tokens` / `response.usage`, and Anthropic `message_start`
//! (`message.usage`) with `message_delta` (`usage.output_tokens`, cumulative).

use std::sync::LazyLock;

use bytes::Bytes;
use memchr::memmem;
use serde::Deserialize;

use crate::sse::{Decoder, Event, Piece};

/// JSON bodies larger than this are not parsed for usage (embeddings of huge batches).
const MAX_JSON_BODY: usize = 8 * 1024 * 1024;
/// SSE events longer than this are not read for usage (they pass on undecoded).
const MAX_SSE_EVENT: usize = 1024 * 1024;

/// Finds `"usage"` in an SSE line; built once (building a finder per line cost more than the
/// search).
static USAGE_KEY: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"usage\""));
/// Finds `"id"` in an SSE line, while a creating request's stream is read for its object id.
static ID_KEY: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"\"id\""));

/// Tokens a response reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every prompt token, cached or not (Anthropic's cache reads and writes included).
    pub input_tokens: u64,
    /// Output tokens, reasoning included (providers bill reasoning as output).
    pub output_tokens: u64,
    /// Of `input_tokens`, those read from the provider's prompt cache (priced lower).
    pub cached_input_tokens: u64,
    /// Of `input_tokens`, those written to Anthropic's prompt cache (priced higher).
    pub cache_write_tokens: u64,
}

/// Reads usage from one response body, fed chunk by chunk.
#[derive(Debug, Default)]
pub enum UsageMeter {
    /// Neither JSON nor SSE (or an error status): nothing to read.
    #[default]
    Off,
    Json {
        /// The first chunk, shared with the response (no copy).
        first: Option<Bytes>,
        /// Every chunk so far, copied, once a second one arrives.
        joined: Vec<u8>,
        overflow: bool,
        /// The answer's `model`, read with its usage.
        model: Option<String>,
    },
    Sse {
        decoder: Decoder,
        usage: Option<Usage>,
        /// `data:` events seen (other than `[DONE]`): the basis of an estimate when the stream
        /// ends before its usage report.
        events: u64,
        /// The stream describes an object the request created: its id is read from the first
        /// event that has one (`response.id`, else `id`).
        want_id: bool,
        id: Option<String>,
        /// The answer's `model`, from the first event that reports usage and names one.
        model: Option<String>,
    },
}

impl UsageMeter {
    /// Picks the reader for a response's `Content-Type`.
    pub fn for_content_type(content_type: Option<&[u8]>) -> Self {
        let Some(ct) = content_type else {
            return UsageMeter::Off;
        };
        let ct = ct.trim_ascii_start();
        if starts_with_ignore_case(ct, b"text/event-stream") {
            UsageMeter::Sse {
                decoder: Decoder::new(MAX_SSE_EVENT),
                usage: None,
                events: 0,
                want_id: false,
                id: None,
                model: None,
            }
        } else if starts_with_ignore_case(ct, b"application/json") {
            UsageMeter::Json {
                first: None,
                joined: Vec::new(),
                overflow: false,
                model: None,
            }
        } else {
            UsageMeter::Off
        }
    }

    /// Feeds the next chunk of the response body.
    pub fn feed(&mut self, chunk: &Bytes) {
        match self {
            UsageMeter::Off => {}
            UsageMeter::Json {
                first,
                joined,
                overflow,
                ..
            } => {
                let held = first.as_ref().map_or(0, Bytes::len) + joined.len();
                if *overflow || held + chunk.len() > MAX_JSON_BODY {
                    *overflow = true;
                    *first = None;
                    *joined = Vec::new();
                } else if first.is_none() && joined.is_empty() {
                    *first = Some(chunk.clone());
                } else {
                    if let Some(head) = first.take() {
                        joined.extend_from_slice(&head);
                    }
                    joined.extend_from_slice(chunk);
                }
            }
            UsageMeter::Sse {
                decoder,
                usage,
                events,
                want_id,
                id,
                model,
            } => decoder.feed(chunk, |piece| {
                if let Piece::Event(event) = piece {
                    let id = (*want_id && id.is_none()).then_some(&mut *id);
                    sse_event(event, usage, events, id, model);
                }
            }),
        }
    }

    /// Stream events seen so far (0 for a JSON body).
    pub fn events(&self) -> u64 {
        match self {
            UsageMeter::Sse { events, .. } => *events,
            UsageMeter::Off | UsageMeter::Json { .. } => 0,
        }
    }

    /// The usage seen, once the body is complete.
    pub fn finish(&mut self) -> Option<Usage> {
        match self {
            UsageMeter::Off => None,
            UsageMeter::Json {
                first,
                joined,
                overflow,
                model,
            } => {
                if *overflow {
                    return None;
                }
                let body = first.as_deref().unwrap_or(joined);
                let parsed: JsonBody = serde_json::from_slice(body).ok()?;
                let (response_usage, response_model) =
                    parsed.response.map_or((None, None), |r| (r.usage, r.model));
                *model = parsed.model.or(response_model);
                parsed.usage.or(response_usage).map(UsageFields::usage)
            }
            UsageMeter::Sse {
                decoder,
                usage,
                events,
                model,
                ..
            } => {
                decoder.finish(|piece| {
                    if let Piece::Unterminated(event) = piece {
                        sse_event(event, usage, events, None, model);
                    }
                });
                *usage
            }
        }
    }

    /// The model the answer says served it, once the body is complete (read beside usage).
    pub fn response_model(&self) -> Option<&str> {
        match self {
            UsageMeter::Off => None,
            UsageMeter::Json { model, .. } | UsageMeter::Sse { model, .. } => model.as_deref(),
        }
    }

    /// Reads the id of the object the response describes (a creating request's answer):
    /// from an SSE stream's first event that carries one, from a JSON body once complete.
    pub fn want_object_id(&mut self) {
        if let UsageMeter::Sse { want_id, .. } = self {
            *want_id = true;
        }
    }

    /// The object id seen, once known (`complete`: the body has ended). `None` when the
    /// response names none, or a JSON body is too large to read.
    pub fn object_id(&self, complete: bool) -> Option<String> {
        match self {
            UsageMeter::Off => None,
            UsageMeter::Sse { id, .. } => id.clone(),
            UsageMeter::Json {
                first,
                joined,
                overflow,
                ..
            } => {
                if !complete || *overflow {
                    return None;
                }
                let body = first.as_deref().unwrap_or(joined);
                serde_json::from_slice::<WithId>(body).ok()?.into_id()
            }
        }
    }
}

/// An answer that describes an object: a Responses stream event names it as `response.id`,
/// everything else as `id`.
#[derive(Deserialize)]
struct WithId {
    id: Option<String>,
    response: Option<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: Option<String>,
}

impl WithId {
    fn into_id(self) -> Option<String> {
        self.response
            .and_then(|r| r.id)
            .or(self.id)
            .filter(|id| !id.is_empty())
    }
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Reads one stream event: counts it, and takes its usage and model (and the object id, when
/// wanted).
fn sse_event(
    event: Event<'_>,
    usage: &mut Option<Usage>,
    events: &mut u64,
    id: Option<&mut Option<String>>,
    model: &mut Option<String>,
) {
    let Some(data) = event.data() else {
        return;
    };
    let data = &*data;
    if data.trim_ascii() != b"[DONE]" {
        *events += 1;
    }
    if let Some(id) = id {
        if ID_KEY.find(data).is_some() {
            *id = serde_json::from_slice::<WithId>(data.trim_ascii())
                .ok()
                .and_then(WithId::into_id);
        }
    }
    if USAGE_KEY.find(data).is_none() {
        return;
    }
    let Ok(event) = serde_json::from_slice::<SseEvent>(data.trim_ascii()) else {
        return;
    };
    let (message, response) = (event.message, event.response);
    if model.is_none() {
        *model = event.model.or_else(|| {
            let nested = message.as_ref().or(response.as_ref());
            nested.and_then(|n| n.model.clone())
        });
    }
    let fields = event
        .usage
        .or(message.and_then(|m| m.usage))
        .or(response.and_then(|r| r.usage));
    let Some(fields) = fields else { return };
    let seen = usage.get_or_insert_with(Usage::default);
    if let Some(input) = fields.input() {
        seen.input_tokens = input;
        seen.cached_input_tokens = fields.cached();
        seen.cache_write_tokens = fields.cache_creation_input_tokens.unwrap_or(0);
    }
    if let Some(output) = fields.output() {
        seen.output_tokens = output;
    }
}

#[derive(Deserialize)]
struct JsonBody {
    usage: Option<UsageFields>,
    model: Option<String>,
    response: Option<Nested>,
}

#[derive(Deserialize)]
struct SseEvent {
    usage: Option<UsageFields>,
    model: Option<String>,
    message: Option<Nested>,
    response: Option<Nested>,
}

#[derive(Deserialize)]
struct Nested {
    usage: Option<UsageFields>,
    model: Option<String>,
}

#[derive(Deserialize)]
struct UsageFields {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    /// OpenAI chat: `prompt_tokens_details.cached_tokens` (part of `prompt_tokens`).
    prompt_tokens_details: Option<CachedDetails>,
    /// OpenAI Responses: `input_tokens_details.cached_tokens` (part of `input_tokens`).
    input_tokens_details: Option<CachedDetails>,
    /// Anthropic: cache reads and writes, reported beside (not in) `input_tokens`.
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CachedDetails {
    cached_tokens: Option<u64>,
}

impl UsageFields {
    /// Every prompt token: Anthropic's cache reads and writes are added to its `input_tokens`.
    fn input(&self) -> Option<u64> {
        let base = self.input_tokens.or(self.prompt_tokens)?;
        Some(
            base.saturating_add(self.cache_read_input_tokens.unwrap_or(0))
                .saturating_add(self.cache_creation_input_tokens.unwrap_or(0)),
        )
    }

    fn cached(&self) -> u64 {
        self.prompt_tokens_details
            .as_ref()
            .or(self.input_tokens_details.as_ref())
            .and_then(|d| d.cached_tokens)
            .or(self.cache_read_input_tokens)
            .unwrap_or(0)
    }

    fn output(&self) -> Option<u64> {
        self.output_tokens.or(self.completion_tokens)
    }

    fn usage(self) -> Usage {
        Usage {
            input_tokens: self.input().unwrap_or(0),
            output_tokens: self.output().unwrap_or(0),
            cached_input_tokens: self.cached(),
            cache_write_tokens: self.cache_creation_input_tokens.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(ct: &str, chunks: &[&[u8]]) -> Option<Usage> {
        let mut m = UsageMeter::for_content_type(Some(ct.as_bytes()));
        for c in chunks {
            m.feed(&Bytes::copy_from_slice(c));
        }
        m.finish()
    }

    #[test]
    fn cached_tokens_are_counted_as_providers_report_them() {
        let openai = br#"{"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":60},"completion_tokens_details":{"reasoning_tokens":3}}}"#;
        assert_eq!(
            meter("application/json", &[openai]),
            Some(Usage {
                input_tokens: 100,
                output_tokens: 5,
                cached_input_tokens: 60,
                cache_write_tokens: 0
            })
        );
        let anthropic = br#"{"usage":{"input_tokens":10,"output_tokens":7,"cache_read_input_tokens":50,"cache_creation_input_tokens":20}}"#;
        assert_eq!(
            meter("application/json", &[anthropic]),
            Some(Usage {
                input_tokens: 80,
                output_tokens: 7,
                cached_input_tokens: 50,
                cache_write_tokens: 20
            })
        );
    }

    #[test]
    fn openai_json_in_pieces() {
        let body: &[u8] =
            br#"{"id":"x","usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;
        let (a, b) = body.split_at(20);
        assert_eq!(
            meter("application/json; charset=utf-8", &[a, b]),
            Some(Usage {
                input_tokens: 12,
                output_tokens: 5,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn embeddings_have_no_output() {
        let body: &[u8] = br#"{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(
            meter("application/json", &[body]),
            Some(Usage {
                input_tokens: 8,
                output_tokens: 0,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn openai_stream_final_chunk_split_across_reads() {
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":9}}\r\n\r\ndata: [DONE]\n\n";
        let (a, b) = stream.split_at(70);
        assert_eq!(
            meter("text/event-stream", &[a, b]),
            Some(Usage {
                input_tokens: 3,
                output_tokens: 9,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn anthropic_stream_start_and_cumulative_delta() {
        let stream = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n",
        );
        assert_eq!(
            meter("text/event-stream", &[stream.as_bytes()]),
            Some(Usage {
                input_tokens: 25,
                output_tokens: 15,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn object_ids_of_created_objects() {
        let mut json = UsageMeter::for_content_type(Some(b"application/json"));
        json.feed(&Bytes::from_static(br#"{"id":"file-1","object":"#));
        assert_eq!(json.object_id(false), None);
        json.feed(&Bytes::from_static(br#""file"}"#));
        assert_eq!(json.object_id(true).as_deref(), Some("file-1"));
        let mut sse = UsageMeter::for_content_type(Some(b"text/event-stream"));
        sse.want_object_id();
        sse.feed(&Bytes::from_static(b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_9\",\"usage\":null}}\n\n"));
        sse.feed(&Bytes::from_static(
            b"data: {\"type\":\"response.output_item.added\",\"item\":{\"id\":\"msg_1\"}}\n\n",
        ));
        assert_eq!(sse.object_id(false).as_deref(), Some("resp_9"));
        let mut unwanted = UsageMeter::for_content_type(Some(b"text/event-stream"));
        unwanted.feed(&Bytes::from_static(b"data: {\"id\":\"chatcmpl-1\"}\n\n"));
        assert_eq!(unwanted.object_id(true), None);
    }

    #[test]
    fn no_usage_and_other_types() {
        assert_eq!(meter("text/event-stream", &[b"data: {\"x\":1}\n\n"]), None);
        assert_eq!(meter("text/plain", &[b"{\"usage\":{}}"]), None);
        assert_eq!(meter("application/json", &[b"not json"]), None);
    }
}
