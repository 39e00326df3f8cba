//! Translated model calls on the request path: which requests are translated (the agent's
//! format against the provider's `api`), the body sent up, the headers the provider's API
//! wants, and the filter that translates the answer as it passes.

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};

use super::error::Refusal;
use crate::providers::{Provider, WireApi};
use crate::translate::{self, Direction};

/// Chat Completions, the one OpenAI path translated to Messages.
const CHAT_PATH: &str = "/v1/chat/completions";
/// Messages, the one Anthropic path translated to Chat Completions.
const MESSAGES_PATH: &str = "/v1/messages";
/// The Messages API version Warden's translation writes.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Translated JSON answers larger than this are refused (an answer is kilobytes).
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// Whether a model call on `path` must be translated for `provider`, and which way. A path of
/// one API that has no counterpart in the provider's (embeddings to Anthropic, token counting
/// to OpenAI) is refused: forwarded, it would reach an endpoint the provider does not have.
pub fn direction(path: &str, provider: &Provider) -> Result<Option<Direction>, Refusal> {
    let anthropic_path = path == MESSAGES_PATH || path.starts_with("/v1/messages/");
    match provider.api {
        WireApi::AsSent => Ok(None),
        WireApi::Anthropic if path == CHAT_PATH => Ok(Some(Direction::ChatToMessages)),
        WireApi::Anthropic if anthropic_path => Ok(None),
        WireApi::OpenAi if path == MESSAGES_PATH => Ok(Some(Direction::MessagesToChat)),
        WireApi::OpenAi if !anthropic_path => Ok(None),
        WireApi::Anthropic | WireApi::OpenAi => {
            let speaks = match provider.api {
                WireApi::Anthropic => "Anthropic's Messages API",
                _ => "OpenAI's API",
            };
            Err(Refusal::Untranslatable(format!(
                "provider `{}` speaks {speaks}, which has no counterpart of `{path}`: Warden translates only {CHAT_PATH} and {MESSAGES_PATH}",
                provider.name
            )))
        }
    }
}

/// A translated call's state, from its request to the end of its answer.
#[derive(Debug)]
pub struct Translation {
    direction: Direction,
    /// A Chat Completions agent asked for the stream's usage chunk.
    include_usage: bool,
    /// The request's arrival (Unix seconds), the `created` of chat completions.
    created: u64,
    answer: Answer,
}

/// How the answer is translated, once its header is known.
#[derive(Debug)]
enum Answer {
    /// Not yet known, or passed as it is (a success that is neither JSON nor a stream).
    AsIs,
    /// A JSON answer or an error, gathered whole and translated at its end.
    Whole { status: u16, body: Vec<u8> },
    /// An event stream, translated event by event.
    Stream(translate::Stream),
}

impl Translation {
    /// Translates the agent's body (`body`) for the provider; `default_max_tokens` caps a
    /// Chat Completions request that sets none (Anthropic requires a cap).
    pub fn request(
        direction: Direction,
        body: &[u8],
        default_max_tokens: u64,
        include_usage: bool,
        created: u64,
    ) -> Result<(Self, translate::Translated), Refusal> {
        let translated =
            translate::request(direction, body, default_max_tokens).map_err(|why| {
                Refusal::Untranslatable(format!(
                    "this request cannot be translated for {}: {why}",
                    direction.provider_api()
                ))
            })?;
        let translation = Translation {
            direction,
            include_usage,
            created,
            answer: Answer::AsIs,
        };
        Ok((translation, translated))
    }

    /// Which way the call is translated.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The provider path (after its base path) the translated request goes to.
    pub fn upstream_path(&self) -> &'static str {
        self.direction.upstream_path()
    }

    /// The headers of the provider's API: Anthropic's version for Messages; the agent's
    /// Anthropic headers are not OpenAI's to read.
    pub fn rewrite_headers(&self, request: &mut RequestHeader) -> pingora::Result<()> {
        match self.direction {
            Direction::ChatToMessages => {
                request.insert_header("anthropic-version", ANTHROPIC_VERSION)?;
            }
            Direction::MessagesToChat => {
                request.remove_header("anthropic-version");
                request.remove_header("anthropic-beta");
            }
        }
        Ok(())
    }

    /// Readies the answer's translation from its header: the body changes, so its length
    /// does too (chunked framing instead).
    pub fn on_response_header(&mut self, response: &mut ResponseHeader) -> pingora::Result<()> {
        let status = response.status.as_u16();
        let content_type = response
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes().trim_ascii_start().to_ascii_lowercase());
        let is = |prefix: &[u8]| content_type.as_ref().is_some_and(|c| c.starts_with(prefix));
        self.answer = if !response.status.is_success() {
            Answer::Whole {
                status,
                body: Vec::new(),
            }
        } else if is(b"text/event-stream") {
            Answer::Stream(translate::Stream::new(
                self.direction,
                self.include_usage,
                self.created,
            ))
        } else if is(b"application/json") {
            Answer::Whole {
                status,
                body: Vec::new(),
            }
        } else {
            Answer::AsIs
        };
        if matches!(self.answer, Answer::AsIs) {
            return Ok(());
        }
        if matches!(self.answer, Answer::Whole { .. }) {
            response.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        }
        response.remove_header(&http::header::CONTENT_LENGTH);
        response.insert_header(http::header::TRANSFER_ENCODING, "chunked")
    }

    /// Translates the answer as its chunks pass: a whole answer at its end, a stream event by
    /// event.
    pub fn filter(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        match &mut self.answer {
            Answer::AsIs => {}
            Answer::Whole { status, body: held } => {
                if let Some(chunk) = body.take() {
                    if held.len() + chunk.len() <= MAX_ANSWER {
                        held.extend_from_slice(&chunk);
                    }
                }
                if end_of_stream {
                    let answer = translate::answer(self.direction, *status, held, self.created);
                    *body = Some(Bytes::from(answer));
                }
            }
            Answer::Stream(stream) => {
                let mut out = Vec::new();
                if let Some(chunk) = body.as_deref() {
                    stream.feed(chunk, &mut out);
                }
                if end_of_stream {
                    stream.finish(&mut out);
                }
                *body = (!out.is_empty()).then(|| Bytes::from(out));
            }
        }
    }
}
