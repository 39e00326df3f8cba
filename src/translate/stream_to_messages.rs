//! A Chat Completions stream as Messages events: `message_start`, one content block per text
//! run or tool call (`content_block_start`/`delta`/`stop`), then `message_delta` with the stop
//! reason and the usage (Warden asked the provider for its usage chunk) and `message_stop`.

use serde_json::Value;

use super::anthropic::{self as an, AnswerBlock, BlockDelta, StreamEvent};
use super::messages_to_chat::{messages_usage, stop_reason, stream_error};
use super::openai::{self as oa, Chunk};
use super::write_event;

#[derive(Debug, Default)]
pub struct ToMessages {
    started: bool,
    /// The content block being written, if one is open.
    open: Option<Open>,
    /// The next content block's index.
    next_block: u32,
    stop_reason: Option<&'static str>,
    usage: Option<oa::ChatUsage>,
    done: bool,
}

/// An open content block: a text run, or the tool call of that Chat Completions index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u32),
    Tool { block: u32, call: u32 },
}

impl Open {
    fn block(self) -> u32 {
        match self {
            Open::Text(block) | Open::Tool { block, .. } => block,
        }
    }
}

/// Whether a chunk is an error (`{"error": {…}}`), as OpenAI reports failures mid-stream.
#[derive(serde::Deserialize)]
struct MaybeError {
    error: Option<oa::ErrorDetail>,
}

impl ToMessages {
    /// One event's data (a chunk, an error, or `[DONE]`).
    pub fn on(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if data.trim_ascii() == b"[DONE]" {
            return self.end(out);
        }
        if let Ok(MaybeError { error: Some(e) }) = serde_json::from_slice(data) {
            let body = stream_error(e.message);
            write_event(out, Some("error"), &body);
            self.done = true;
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Chunk>(data) else {
            return;
        };
        if !self.started {
            self.started = true;
            let message = an::MessagesAnswer {
                id: chunk.id.clone(),
                kind: "message".into(),
                role: "assistant".into(),
                model: chunk.model.clone(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: an::Usage {
                    input_tokens: Some(0),
                    ..an::Usage::default()
                },
            };
            emit(out, &StreamEvent::MessageStart { message });
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let Some(choice) = chunk.choices.into_iter().find(|c| c.index == 0) else {
            return;
        };
        let delta = choice.delta;
        for text in [delta.content, delta.refusal].into_iter().flatten() {
            if text.is_empty() {
                continue;
            }
            let block = match self.open {
                Some(Open::Text(block)) => block,
                _ => self.start(
                    out,
                    None,
                    AnswerBlock::Text {
                        text: String::new(),
                    },
                ),
            };
            let delta = BlockDelta::TextDelta { text };
            emit(
                out,
                &StreamEvent::ContentBlockDelta {
                    index: block,
                    delta,
                },
            );
        }
        for call in delta.tool_calls.into_iter().flatten() {
            let block = match self.open {
                Some(Open::Tool { block, call: open })
                    if open == call.index && call.id.is_none() =>
                {
                    block
                }
                _ => {
                    let function = call.function.clone().unwrap_or_default();
                    let start = AnswerBlock::ToolUse {
                        id: call.id.clone().unwrap_or_default(),
                        name: function.name.unwrap_or_default(),
                        input: Value::Object(serde_json::Map::new()),
                    };
                    self.start(out, Some(call.index), start)
                }
            };
            let arguments = call
                .function
                .and_then(|f| f.arguments)
                .filter(|a| !a.is_empty());
            if let Some(partial_json) = arguments {
                let delta = BlockDelta::InputJsonDelta { partial_json };
                emit(
                    out,
                    &StreamEvent::ContentBlockDelta {
                        index: block,
                        delta,
                    },
                );
            }
        }
        if let Some(finish) = choice.finish_reason {
            self.stop_reason = Some(stop_reason(Some(&finish)));
            self.close(out);
        }
    }

    /// The provider's stream ended without `[DONE]`: a stream that had finished (its
    /// `finish_reason` came) is completed; one cut before stays cut.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.done && self.stop_reason.is_some() {
            self.end(out);
        }
    }

    /// Opens a content block (closing the open one), returning its index.
    fn start(&mut self, out: &mut Vec<u8>, call: Option<u32>, block: AnswerBlock) -> u32 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some(match call {
            Some(call) => Open::Tool { block: index, call },
            None => Open::Text(index),
        });
        emit(
            out,
            &StreamEvent::ContentBlockStart {
                index,
                content_block: block,
            },
        );
        index
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(open) = self.open.take() {
            emit(
                out,
                &StreamEvent::ContentBlockStop {
                    index: open.block(),
                },
            );
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        self.close(out);
        let usage = self.usage.as_ref().map(messages_usage).unwrap_or_default();
        let delta = an::StopDelta {
            stop_reason: Some(self.stop_reason.unwrap_or("end_turn").into()),
            stop_sequence: None,
        };
        emit(out, &StreamEvent::MessageDelta { delta, usage });
        emit(out, &StreamEvent::MessageStop);
        self.done = true;
    }
}

/// Writes an event under its own type's name, as Anthropic streams do.
fn emit(out: &mut Vec<u8>, event: &StreamEvent) {
    let name = match event {
        StreamEvent::MessageStart { .. } => "message_start",
        StreamEvent::ContentBlockStart { .. } => "content_block_start",
        StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
        StreamEvent::ContentBlockStop { .. } => "content_block_stop",
        StreamEvent::MessageDelta { .. } => "message_delta",
        StreamEvent::MessageStop => "message_stop",
        StreamEvent::Ping => "ping",
        StreamEvent::Error { .. } => "error",
    };
    write_event(out, Some(name), event);
}
