//! A Messages stream as Chat Completions chunks: text and tool-call argument deltas as they
//! come, `finish_reason` from `message_delta`, the usage chunk when the agent asked for it,
//! then `[DONE]`.

use super::anthropic::{AnswerBlock, BlockDelta, StreamEvent, Usage};
use super::chat_to_messages::{chat_usage, finish_reason};
use super::content::Function;
use super::openai::{self as oa, Chunk, ChunkChoice, Delta, ToolCallDelta};
use super::write_event;

#[derive(Debug, Default)]
pub struct ToChat {
    include_usage: bool,
    created: u64,
    id: String,
    model: String,
    usage: Usage,
    /// For each Anthropic content block index that is a tool call, its tool-call index.
    tool_calls: Vec<(u32, u32)>,
    done: bool,
}

impl ToChat {
    pub fn new(include_usage: bool, created: u64) -> Self {
        ToChat {
            include_usage,
            created,
            ..ToChat::default()
        }
    }

    /// One event's data. Events the chunks have no place for (pings, thinking) give nothing.
    pub fn on(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let Ok(event) = serde_json::from_slice::<StreamEvent>(data) else {
            return;
        };
        match event {
            StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.usage = message.usage;
                self.write(
                    out,
                    delta(Delta {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                        ..Delta::default()
                    }),
                );
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                AnswerBlock::Text { text } if !text.is_empty() => {
                    self.write(
                        out,
                        delta(Delta {
                            content: Some(text),
                            ..Delta::default()
                        }),
                    );
                }
                AnswerBlock::ToolUse { id, name, .. } => {
                    let call = self.tool_calls.len() as u32;
                    self.tool_calls.push((index, call));
                    self.write(
                        out,
                        delta(Delta {
                            tool_calls: Some(vec![ToolCallDelta {
                                index: call,
                                id: Some(id),
                                kind: Some(Function::Function),
                                function: Some(oa::FunctionDelta {
                                    name: Some(name),
                                    arguments: Some(String::new()),
                                }),
                            }]),
                            ..Delta::default()
                        }),
                    );
                }
                _ => {}
            },
            StreamEvent::ContentBlockDelta { index, delta: d } => match d {
                BlockDelta::TextDelta { text } => self.write(
                    out,
                    delta(Delta {
                        content: Some(text),
                        ..Delta::default()
                    }),
                ),
                BlockDelta::InputJsonDelta { partial_json } => {
                    let Some(&(_, call)) = self.tool_calls.iter().find(|(i, _)| *i == index) else {
                        return;
                    };
                    self.write(
                        out,
                        delta(Delta {
                            tool_calls: Some(vec![ToolCallDelta {
                                index: call,
                                function: Some(oa::FunctionDelta {
                                    name: None,
                                    arguments: Some(partial_json),
                                }),
                                ..ToolCallDelta::default()
                            }]),
                            ..Delta::default()
                        }),
                    );
                }
                BlockDelta::Other => {}
            },
            StreamEvent::MessageDelta { delta: d, usage } => {
                self.usage.output_tokens = usage.output_tokens;
                if usage.input_tokens.is_some() {
                    self.usage.input_tokens = usage.input_tokens;
                }
                for (seen, cache) in [
                    (
                        usage.cache_read_input_tokens,
                        &mut self.usage.cache_read_input_tokens,
                    ),
                    (
                        usage.cache_creation_input_tokens,
                        &mut self.usage.cache_creation_input_tokens,
                    ),
                ] {
                    if seen.is_some() {
                        *cache = seen;
                    }
                }
                let choice = ChunkChoice {
                    index: 0,
                    delta: Delta::default(),
                    finish_reason: Some(finish_reason(d.stop_reason.as_deref()).into()),
                };
                self.write(out, vec![choice]);
            }
            StreamEvent::MessageStop => self.end(out),
            StreamEvent::Error { error } => {
                let body = oa::ErrorBody {
                    error: oa::ErrorDetail {
                        message: error.message,
                        kind: Some(error.kind),
                        param: None,
                        code: None,
                    },
                };
                write_event(out, None, &body);
                self.done = true;
            }
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping => {}
        }
    }

    /// The provider's stream ended. One cut before `message_stop` stays cut: the agent sees
    /// no `[DONE]`, as it would from the provider.
    pub fn finish(&mut self, _out: &mut Vec<u8>) {}

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.include_usage {
            let chunk = self.chunk(Vec::new(), Some(chat_usage(&self.usage)));
            write_event(out, None, &chunk);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.done = true;
    }

    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<oa::ChatUsage>) -> Chunk {
        Chunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }

    fn write(&self, out: &mut Vec<u8>, choices: Vec<ChunkChoice>) {
        write_event(out, None, &self.chunk(choices, None));
    }
}

/// The one choice of a chunk, carrying `d`.
fn delta(d: Delta) -> Vec<ChunkChoice> {
    vec![ChunkChoice {
        index: 0,
        delta: d,
        finish_reason: None,
    }]
}
