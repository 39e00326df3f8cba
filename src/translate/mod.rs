//! Translation between the two wire formats agents and providers speak: OpenAI Chat
//! Completions and Anthropic Messages.
//!
//! When an agent's format and its provider's `api` differ, the request is translated on the
//! way up and the answer (JSON, stream or error) on the way down. The translators are pure
//! functions over the typed messages of [`openai`] and [`anthropic`]: no proxy types, no I/O.
//! Requests are read strictly — a member, part or value the other API cannot carry is refused
//! with a message naming it ([`Untranslatable`]), never dropped — and the body sent upstream is
//! written by Warden, so the provider acts on exactly what Warden judged. Streams are cut into
//! events by the one SSE decoder ([`crate::sse`]).

pub mod anthropic;
pub mod chat_to_messages;
mod content;
pub mod messages_to_chat;
pub mod openai;
mod stream_to_chat;
mod stream_to_messages;

use std::fmt;

pub use content::TextOrParts;

/// Which way a request is translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The agent speaks Chat Completions, the provider Messages.
    ChatToMessages,
    /// The agent speaks Messages, the provider Chat Completions.
    MessagesToChat,
}

impl Direction {
    /// The provider path the translated request goes to, after the provider's base path.
    pub fn upstream_path(self) -> &'static str {
        match self {
            Direction::ChatToMessages => "/messages",
            Direction::MessagesToChat => "/chat/completions",
        }
    }

    /// Its name in audit records.
    pub fn name(self) -> &'static str {
        match self {
            Direction::ChatToMessages => "chat_to_messages",
            Direction::MessagesToChat => "messages_to_chat",
        }
    }

    /// The provider's API, for messages.
    pub fn provider_api(self) -> &'static str {
        match self {
            Direction::ChatToMessages => "Anthropic's Messages API",
            Direction::MessagesToChat => "OpenAI's Chat Completions API",
        }
    }
}

/// Why a request cannot be translated faithfully: the text names what and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable(pub String);

impl Untranslatable {
    fn new(why: impl Into<String>) -> Self {
        Untranslatable(why.into())
    }

    /// A request the strict types refuse: serde's message names the member or part.
    fn unreadable(e: &serde_json::Error) -> Self {
        Untranslatable(e.to_string())
    }
}

impl fmt::Display for Untranslatable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A translated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The body for the provider.
    pub body: Vec<u8>,
    pub stream: bool,
    /// The output cap the provider was sent (Anthropic requires one): what a budget reserves.
    pub max_tokens: Option<u64>,
}

/// Translates an agent's request body for the provider.
pub fn request(
    direction: Direction,
    body: &[u8],
    default_max_tokens: u64,
) -> Result<Translated, Untranslatable> {
    match direction {
        Direction::ChatToMessages => chat_to_messages::request(body, default_max_tokens),
        Direction::MessagesToChat => messages_to_chat::request(body),
    }
}

/// Translates the provider's whole JSON answer (`status` its HTTP status: an error is
/// rendered in the agent's error shape). `created` stamps a chat completion (Unix seconds).
pub fn answer(direction: Direction, status: u16, body: &[u8], created: u64) -> Vec<u8> {
    let success = (200..300).contains(&status);
    match (direction, success) {
        (Direction::ChatToMessages, true) => chat_to_messages::answer(body, created),
        (Direction::ChatToMessages, false) => chat_to_messages::error(status, body),
        (Direction::MessagesToChat, true) => messages_to_chat::answer(body),
        (Direction::MessagesToChat, false) => messages_to_chat::error(status, body),
    }
}

/// A stream being translated, event by event, as its chunks pass.
#[derive(Debug)]
pub struct Stream {
    decoder: crate::sse::Decoder,
    events: Events,
}

#[derive(Debug)]
enum Events {
    ToChat(stream_to_chat::ToChat),
    ToMessages(stream_to_messages::ToMessages),
}

/// Stream events longer than this pass untranslated (an event is a small JSON object; a
/// megabyte is no event a provider sends).
const MAX_EVENT: usize = 1024 * 1024;

impl Stream {
    /// `include_usage`: the Chat Completions agent asked for the usage chunk.
    pub fn new(direction: Direction, include_usage: bool, created: u64) -> Self {
        Stream {
            decoder: crate::sse::Decoder::new(MAX_EVENT),
            events: match direction {
                Direction::ChatToMessages => {
                    Events::ToChat(stream_to_chat::ToChat::new(include_usage, created))
                }
                Direction::MessagesToChat => {
                    Events::ToMessages(stream_to_messages::ToMessages::default())
                }
            },
        }
    }

    /// Translates the events `chunk` completes into `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let events = &mut self.events;
        self.decoder.feed(chunk, |piece| {
            if let crate::sse::Piece::Event(event) = piece {
                if let Some(data) = event.data() {
                    events.on(&data, out);
                }
            }
        });
    }

    /// The provider's stream has ended: translates what is left.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let events = &mut self.events;
        self.decoder.finish(|piece| {
            if let crate::sse::Piece::Unterminated(event) = piece {
                if let Some(data) = event.data() {
                    events.on(&data, out);
                }
            }
        });
        match events {
            Events::ToChat(t) => t.finish(out),
            Events::ToMessages(t) => t.finish(out),
        }
    }
}

impl Events {
    fn on(&mut self, data: &[u8], out: &mut Vec<u8>) {
        match self {
            Events::ToChat(t) => t.on(data, out),
            Events::ToMessages(t) => t.on(data, out),
        }
    }
}

/// Appends one SSE event (`event:` line when named) with `data` serialized as JSON.
fn write_event<T: serde::Serialize>(out: &mut Vec<u8>, name: Option<&str>, data: &T) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    // Serializing typed values into a Vec cannot fail (no maps with non-string keys).
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// Serializes a typed value (cannot fail: no maps with non-string keys).
fn to_vec<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// A provider's error body that is not in its API's error shape, quoted for the agent: its
/// status and its first 500 bytes of text.
fn quoted(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let cut = text
        .char_indices()
        .nth(500)
        .map_or(text, |(at, _)| &text[..at]);
    format!("the provider answered {status}: {cut}")
}

#[cfg(test)]
mod tests;
