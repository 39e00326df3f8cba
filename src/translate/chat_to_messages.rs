//! An agent speaking Chat Completions, a provider speaking Messages: the request one way, the
//! answer and its error the other way (streams: `stream_to_chat`).

use serde_json::Value;

use super::anthropic::{self as an, Block, ImageSource, Message, MessagesRequest, Role};
use super::openai::{self as oa, ChatMessage, ChatRequest, Stop, ToolChoice, ToolMode, UserPart};
use super::{to_vec, TextOrParts, Translated, Untranslatable};

/// Thinking budgets for `reasoning_effort` (Anthropic's minimum is 1 024).
const THINKING_BUDGETS: &[(&str, Option<u64>)] = &[
    ("none", None),
    ("minimal", None),
    ("low", Some(1024)),
    ("medium", Some(4096)),
    ("high", Some(16_384)),
];

/// Image types Anthropic reads.
const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Translates a Chat Completions request body into a Messages one. `default_max_tokens`
/// caps a request that sets no cap (Anthropic requires one).
pub fn request(body: &[u8], default_max_tokens: u64) -> Result<Translated, Untranslatable> {
    let chat: ChatRequest =
        serde_json::from_slice(body).map_err(|e| Untranslatable::unreadable(&e))?;
    let stream = chat.stream.unwrap_or(false);
    let messages = to_messages(chat, default_max_tokens)?;
    Ok(Translated {
        body: to_vec(&messages),
        stream,
        max_tokens: Some(messages.max_tokens),
    })
}

/// The Messages request for a Chat Completions one.
pub fn to_messages(
    chat: ChatRequest,
    default_max_tokens: u64,
) -> Result<MessagesRequest, Untranslatable> {
    if chat.n.is_some_and(|n| n > 1) {
        return Err(Untranslatable::new(
            "`n` above 1: Anthropic's Messages API returns one completion per request",
        ));
    }
    if chat.store == Some(true) {
        return Err(Untranslatable::new(
            "`store: true`: Anthropic's Messages API keeps no completions",
        ));
    }
    let penalized = [chat.presence_penalty, chat.frequency_penalty]
        .into_iter()
        .flatten()
        .any(|p| p != 0.0);
    if penalized {
        return Err(Untranslatable::new(
            "a non-zero `presence_penalty` or `frequency_penalty`: Anthropic's Messages API has no penalties",
        ));
    }
    if chat.logprobs == Some(true) {
        return Err(Untranslatable::new(
            "`logprobs: true`: Anthropic's Messages API returns no log probabilities",
        ));
    }
    if chat.temperature.is_some_and(|t| t > 1.0) {
        return Err(Untranslatable::new(
            "`temperature` above 1: Anthropic's Messages API takes 0 to 1",
        ));
    }
    let budget = match &chat.reasoning_effort {
        None => None,
        Some(effort) => THINKING_BUDGETS
            .iter()
            .find(|(name, _)| name == effort)
            .ok_or_else(|| {
                Untranslatable::new(format!(
                    "`reasoning_effort` `{effort}` has no Anthropic thinking budget (none, minimal, low, medium or high)"
                ))
            })?
            .1,
    };
    let max_tokens = match (chat.max_completion_tokens.or(chat.max_tokens), budget) {
        (Some(cap), Some(budget)) if cap <= budget => {
            return Err(Untranslatable::new(format!(
                "`reasoning_effort` gives Anthropic a thinking budget of {budget} tokens, which must be below the output cap ({cap})"
            )))
        }
        (Some(cap), _) => cap,
        (None, budget) => default_max_tokens.saturating_add(budget.unwrap_or(0)),
    };
    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::with_capacity(chat.messages.len());
    for message in chat.messages {
        match message {
            ChatMessage::System { content } | ChatMessage::Developer { content } => {
                system.extend(texts(content).map(|text| an::TextBlock::Text {
                    text,
                    cache_control: None,
                }));
            }
            ChatMessage::User { content } => push(&mut messages, Role::User, user_blocks(content)?),
            ChatMessage::Assistant {
                content,
                tool_calls,
                refusal,
            } => {
                let mut blocks = Vec::new();
                if let Some(content) = content {
                    blocks.extend(assistant_texts(content).map(text_block));
                }
                blocks.extend(refusal.map(text_block));
                for call in tool_calls.into_iter().flatten() {
                    blocks.push(Block::ToolUse {
                        input: arguments(&call.function.name, &call.function.arguments)?,
                        id: call.id,
                        name: call.function.name,
                        cache_control: None,
                    });
                }
                push(&mut messages, Role::Assistant, blocks);
            }
            ChatMessage::Tool {
                content,
                tool_call_id,
            } => {
                let content = match content {
                    TextOrParts::Text(text) => TextOrParts::Text(text),
                    TextOrParts::Parts(parts) => TextOrParts::Parts(
                        parts
                            .into_iter()
                            .map(|oa::TextPart::Text { text }| an::TextBlock::Text {
                                text,
                                cache_control: None,
                            })
                            .collect(),
                    ),
                };
                let result = Block::ToolResult {
                    tool_use_id: tool_call_id,
                    content: Some(content),
                    is_error: None,
                    cache_control: None,
                };
                push(&mut messages, Role::User, vec![result]);
            }
        }
    }
    let parallel_off = chat.parallel_tool_calls == Some(false);
    let tools = chat
        .tools
        .map(|tools| tools.into_iter().map(tool).collect())
        .transpose()?;
    let tool_choice = match (chat.tool_choice, parallel_off && tools.is_some()) {
        (None, false) => None,
        (None, true) => Some(an::ToolChoice::Auto {
            disable_parallel_tool_use: Some(true),
        }),
        (Some(choice), off) => Some(tool_choice(choice, off)),
    };
    Ok(MessagesRequest {
        model: chat.model,
        max_tokens,
        messages,
        system: (!system.is_empty()).then_some(TextOrParts::Parts(system)),
        stop_sequences: chat.stop.map(|stop| match stop {
            Stop::One(one) => vec![one],
            Stop::Many(many) => many,
        }),
        temperature: chat.temperature,
        top_p: chat.top_p,
        top_k: None,
        stream: chat.stream.filter(|s| *s),
        tools,
        tool_choice,
        thinking: budget.map(|budget_tokens| an::Thinking::Enabled { budget_tokens }),
        metadata: chat.user.map(|user_id| an::Metadata {
            user_id: Some(user_id),
        }),
    })
}

/// Adds blocks as a message of `role`, into the last message when it has that role too
/// (Anthropic alternates roles; tool results and the user's next words share one message).
fn push(messages: &mut Vec<Message>, role: Role, blocks: Vec<Block>) {
    if let Some(last) = messages.last_mut().filter(|m| m.role == role) {
        if let TextOrParts::Parts(existing) = &mut last.content {
            existing.extend(blocks);
            return;
        }
    }
    messages.push(Message {
        role,
        content: TextOrParts::Parts(blocks),
    });
}

fn text_block(text: String) -> Block {
    Block::Text {
        text,
        cache_control: None,
    }
}

/// The texts of a text-only content.
fn texts(content: TextOrParts<oa::TextPart>) -> impl Iterator<Item = String> {
    let parts = match content {
        TextOrParts::Text(text) => vec![text],
        TextOrParts::Parts(parts) => parts
            .into_iter()
            .map(|oa::TextPart::Text { text }| text)
            .collect(),
    };
    parts.into_iter()
}

/// The texts of an earlier assistant message (a refusal is what it said).
fn assistant_texts(content: TextOrParts<oa::AssistantPart>) -> impl Iterator<Item = String> {
    let parts = match content {
        TextOrParts::Text(text) if text.is_empty() => Vec::new(),
        TextOrParts::Text(text) => vec![text],
        TextOrParts::Parts(parts) => parts
            .into_iter()
            .map(|part| match part {
                oa::AssistantPart::Text { text } => text,
                oa::AssistantPart::Refusal { refusal } => refusal,
            })
            .collect(),
    };
    parts.into_iter()
}

fn user_blocks(content: TextOrParts<UserPart>) -> Result<Vec<Block>, Untranslatable> {
    match content {
        TextOrParts::Text(text) => Ok(vec![text_block(text)]),
        TextOrParts::Parts(parts) => parts
            .into_iter()
            .map(|part| match part {
                UserPart::Text { text } => Ok(text_block(text)),
                UserPart::ImageUrl { image_url } => Ok(Block::Image {
                    source: image_source(&image_url.url)?,
                    cache_control: None,
                }),
            })
            .collect(),
    }
}

/// An image part's URL as an Anthropic image source: a base64 data URL of a type Anthropic
/// reads, or an http(s) URL.
fn image_source(url: &str) -> Result<ImageSource, Untranslatable> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').unwrap_or((rest, ""));
        let Some(media_type) = meta.strip_suffix(";base64") else {
            return Err(Untranslatable::new(
                "an image data URL that is not base64: Anthropic takes base64 images only",
            ));
        };
        if !IMAGE_TYPES.contains(&media_type) {
            return Err(Untranslatable::new(format!(
                "an image of type `{media_type}`: Anthropic reads JPEG, PNG, GIF and WebP"
            )));
        }
        return Ok(ImageSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(ImageSource::Url {
            url: url.to_owned(),
        });
    }
    Err(Untranslatable::new(
        "an image URL that is neither http(s) nor a data URL",
    ))
}

/// A tool call's arguments (a JSON text) as the object Anthropic's `input` is.
fn arguments(name: &str, arguments: &str) -> Result<Value, Untranslatable> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(Untranslatable::new(format!(
            "the arguments of tool call `{name}` are not a JSON object: Anthropic's tool_use input must be one"
        ))),
    }
}

fn tool(tool: oa::Tool) -> Result<an::Tool, Untranslatable> {
    let f = tool.function;
    if f.strict == Some(true) {
        return Err(Untranslatable::new(format!(
            "tool `{}` is `strict`: Anthropic's Messages API has no strict schema adherence",
            f.name
        )));
    }
    Ok(an::Tool {
        name: f.name,
        description: f.description,
        input_schema: f
            .parameters
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        kind: None,
        cache_control: None,
    })
}

fn tool_choice(choice: ToolChoice, parallel_off: bool) -> an::ToolChoice {
    let disable = parallel_off.then_some(true);
    match choice {
        ToolChoice::Mode(ToolMode::Auto) => an::ToolChoice::Auto {
            disable_parallel_tool_use: disable,
        },
        ToolChoice::Mode(ToolMode::None) => an::ToolChoice::None {},
        ToolChoice::Mode(ToolMode::Required) => an::ToolChoice::Any {
            disable_parallel_tool_use: disable,
        },
        ToolChoice::Named(named) => an::ToolChoice::Tool {
            name: named.function.name,
            disable_parallel_tool_use: disable,
        },
    }
}

/// Chat Completions' `finish_reason` for Anthropic's `stop_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// OpenAI's usage for Anthropic's: every prompt token, cached or not, with the cache reads
/// as `cached_tokens`.
pub fn chat_usage(usage: &an::Usage) -> oa::ChatUsage {
    let cached = usage.cache_read_input_tokens.unwrap_or(0);
    let prompt = usage
        .input_tokens
        .unwrap_or(0)
        .saturating_add(cached)
        .saturating_add(usage.cache_creation_input_tokens.unwrap_or(0));
    oa::ChatUsage {
        prompt_tokens: prompt,
        completion_tokens: usage.output_tokens,
        total_tokens: prompt.saturating_add(usage.output_tokens),
        prompt_tokens_details: Some(oa::PromptDetails {
            cached_tokens: cached,
        }),
    }
}

/// A Messages answer as a chat completion.
pub fn answer(body: &[u8], created: u64) -> Vec<u8> {
    let answer: an::MessagesAnswer = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(e) => return unreadable_answer(&e),
    };
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    for block in answer.content {
        match block {
            an::AnswerBlock::Text { text: t } => text.get_or_insert_with(String::new).push_str(&t),
            an::AnswerBlock::ToolUse { id, name, input } => calls.push(oa::ToolCall {
                id,
                kind: super::content::Function::Function,
                function: oa::FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            an::AnswerBlock::Thinking { .. } | an::AnswerBlock::Other => {}
        }
    }
    let completion = oa::ChatCompletion {
        id: answer.id,
        object: "chat.completion".into(),
        created,
        model: answer.model,
        choices: vec![oa::Choice {
            index: 0,
            message: oa::AnswerMessage {
                role: "assistant".into(),
                content: text,
                refusal: None,
                tool_calls: (!calls.is_empty()).then_some(calls),
            },
            finish_reason: Some(finish_reason(answer.stop_reason.as_deref()).into()),
            logprobs: None,
        }],
        usage: Some(chat_usage(&answer.usage)),
    };
    to_vec(&completion)
}

/// The provider's answer did not read as a Messages answer: said in OpenAI's error shape.
fn unreadable_answer(e: &serde_json::Error) -> Vec<u8> {
    to_vec(&oa::ErrorBody {
        error: oa::ErrorDetail {
            message: format!("Warden could not translate the provider's answer: {e}"),
            kind: Some("api_error".into()),
            param: None,
            code: None,
        },
    })
}

/// An Anthropic error body in OpenAI's shape (same status; a body that is not Anthropic's
/// error is quoted, cut short).
pub fn error(status: u16, body: &[u8]) -> Vec<u8> {
    let (kind, message) = match serde_json::from_slice::<an::ErrorBody>(body) {
        Ok(e) => (e.error.kind, e.error.message),
        Err(_) => ("api_error".into(), super::quoted(status, body)),
    };
    to_vec(&oa::ErrorBody {
        error: oa::ErrorDetail {
            message,
            kind: Some(kind),
            param: None,
            code: None,
        },
    })
}
