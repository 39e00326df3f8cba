//! An agent speaking Messages, a provider speaking Chat Completions: the request one way, the
//! answer and its error the other way (streams: `stream_to_messages`).

use serde_json::Value;

use super::anthropic::{self as an, Block, ImageSource, MessagesRequest, Role};
use super::content::Function;
use super::openai::{self as oa, ChatMessage, ChatRequest, ToolChoice, ToolMode};
use super::{to_vec, TextOrParts, Translated, Untranslatable};

/// `reasoning_effort` for a thinking budget: below the first bound `low`, below the second
/// `medium`, else `high`.
const EFFORT_BOUNDS: (u64, u64) = (4096, 16_384);

/// Translates a Messages request body into a Chat Completions one. A stream asks for the
/// usage chunk: Anthropic's stream reports usage, so Warden needs it to write `message_delta`.
pub fn request(body: &[u8]) -> Result<Translated, Untranslatable> {
    let messages: MessagesRequest =
        serde_json::from_slice(body).map_err(|e| Untranslatable::unreadable(&e))?;
    let chat = to_chat(messages)?;
    Ok(Translated {
        body: to_vec(&chat),
        stream: chat.stream.unwrap_or(false),
        max_tokens: chat.max_completion_tokens,
    })
}

/// The Chat Completions request for a Messages one.
pub fn to_chat(request: MessagesRequest) -> Result<ChatRequest, Untranslatable> {
    if request.top_k.is_some() {
        return Err(Untranslatable::new(
            "`top_k`: OpenAI's Chat Completions API has no top-k sampling",
        ));
    }
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system {
        let content = match system {
            TextOrParts::Text(text) => TextOrParts::Text(text),
            TextOrParts::Parts(blocks) => TextOrParts::Parts(
                blocks
                    .into_iter()
                    .map(|an::TextBlock::Text { text, .. }| oa::TextPart::Text { text })
                    .collect(),
            ),
        };
        messages.push(ChatMessage::System { content });
    }
    for message in request.messages {
        match message.role {
            Role::User => user(message.content, &mut messages)?,
            Role::Assistant => messages.push(assistant(message.content)?),
        }
    }
    let stream = request.stream.filter(|s| *s);
    let parallel = match &request.tool_choice {
        Some(
            an::ToolChoice::Auto {
                disable_parallel_tool_use,
            }
            | an::ToolChoice::Any {
                disable_parallel_tool_use,
            }
            | an::ToolChoice::Tool {
                disable_parallel_tool_use,
                ..
            },
        ) => disable_parallel_tool_use.map(|off| !off),
        _ => None,
    };
    Ok(ChatRequest {
        model: request.model,
        messages,
        max_completion_tokens: Some(request.max_tokens),
        temperature: request.temperature,
        top_p: request.top_p,
        stop: request.stop_sequences.map(oa::Stop::Many),
        stream,
        stream_options: stream.map(|_| oa::StreamOptions {
            include_usage: Some(true),
        }),
        tools: request
            .tools
            .map(|tools| tools.into_iter().map(tool).collect()),
        tool_choice: request.tool_choice.map(tool_choice),
        parallel_tool_calls: parallel,
        reasoning_effort: match request.thinking {
            Some(an::Thinking::Enabled { budget_tokens }) => Some(effort(budget_tokens).into()),
            _ => None,
        },
        user: request.metadata.and_then(|m| m.user_id),
        ..ChatRequest::default()
    })
}

fn effort(budget: u64) -> &'static str {
    match budget {
        b if b < EFFORT_BOUNDS.0 => "low",
        b if b < EFFORT_BOUNDS.1 => "medium",
        _ => "high",
    }
}

/// A user message: its tool results become `tool` messages (first: they answer the
/// assistant's calls, which Chat Completions wants right after them), the rest one user
/// message.
fn user(content: TextOrParts<Block>, out: &mut Vec<ChatMessage>) -> Result<(), Untranslatable> {
    let blocks = match content {
        TextOrParts::Text(text) => {
            out.push(ChatMessage::User {
                content: TextOrParts::Text(text),
            });
            return Ok(());
        }
        TextOrParts::Parts(blocks) => blocks,
    };
    let mut parts = Vec::new();
    for block in blocks {
        match block {
            Block::Text { text, .. } => parts.push(oa::UserPart::Text { text }),
            Block::Image { source, .. } => parts.push(oa::UserPart::ImageUrl {
                image_url: oa::ImageUrl {
                    url: image_url(source),
                    detail: None,
                },
            }),
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } => out.push(ChatMessage::Tool {
                content: tool_result(content, is_error == Some(true)),
                tool_call_id: tool_use_id,
            }),
            Block::ToolUse { .. } | Block::Thinking { .. } | Block::RedactedThinking { .. } => {
                return Err(Untranslatable::new(
                    "a user message with a tool_use or thinking block: only assistant turns have them",
                ))
            }
        }
    }
    if !parts.is_empty() {
        out.push(ChatMessage::User {
            content: TextOrParts::Parts(parts),
        });
    }
    Ok(())
}

/// A tool result's content as a tool message's. Chat Completions has no error flag: an error
/// result says so in its first words (`Error:`).
fn tool_result(
    content: Option<TextOrParts<an::TextBlock>>,
    is_error: bool,
) -> TextOrParts<oa::TextPart> {
    let mut parts: Vec<oa::TextPart> = match content {
        None => Vec::new(),
        Some(TextOrParts::Text(text)) if !is_error => return TextOrParts::Text(text),
        Some(TextOrParts::Text(text)) => vec![oa::TextPart::Text { text }],
        Some(TextOrParts::Parts(blocks)) => blocks
            .into_iter()
            .map(|an::TextBlock::Text { text, .. }| oa::TextPart::Text { text })
            .collect(),
    };
    if is_error {
        parts.insert(
            0,
            oa::TextPart::Text {
                text: "Error:".into(),
            },
        );
    }
    if parts.is_empty() {
        return TextOrParts::Text(String::new());
    }
    TextOrParts::Parts(parts)
}

fn image_url(source: ImageSource) -> String {
    match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url,
    }
}

/// An assistant turn: its text and its tool calls (thinking blocks are dropped: they are
/// Anthropic-signed reasoning no other provider reads, and Anthropic itself ignores them in
/// earlier turns).
fn assistant(content: TextOrParts<Block>) -> Result<ChatMessage, Untranslatable> {
    let blocks = match content {
        TextOrParts::Text(text) => {
            return Ok(ChatMessage::Assistant {
                content: Some(TextOrParts::Text(text)),
                tool_calls: None,
                refusal: None,
            })
        }
        TextOrParts::Parts(blocks) => blocks,
    };
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    for block in blocks {
        match block {
            Block::Text { text: t, .. } => text.get_or_insert_with(String::new).push_str(&t),
            Block::ToolUse { id, name, input, .. } => calls.push(oa::ToolCall {
                id,
                kind: Function::Function,
                function: oa::FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            Block::Thinking { .. } | Block::RedactedThinking { .. } => {}
            Block::Image { .. } | Block::ToolResult { .. } => {
                return Err(Untranslatable::new(
                    "an assistant message with an image or tool_result block: only user turns have them",
                ))
            }
        }
    }
    Ok(ChatMessage::Assistant {
        content: text.map(TextOrParts::Text),
        tool_calls: (!calls.is_empty()).then_some(calls),
        refusal: None,
    })
}

fn tool(tool: an::Tool) -> oa::Tool {
    oa::Tool {
        kind: Function::Function,
        function: oa::FunctionDef {
            name: tool.name,
            description: tool.description,
            parameters: Some(tool.input_schema),
            strict: None,
        },
    }
}

fn tool_choice(choice: an::ToolChoice) -> ToolChoice {
    match choice {
        an::ToolChoice::Auto { .. } => ToolChoice::Mode(ToolMode::Auto),
        an::ToolChoice::Any { .. } => ToolChoice::Mode(ToolMode::Required),
        an::ToolChoice::None {} => ToolChoice::Mode(ToolMode::None),
        an::ToolChoice::Tool { name, .. } => ToolChoice::Named(oa::NamedTool {
            kind: Function::Function,
            function: oa::ToolName { name },
        }),
    }
}

/// Anthropic's `stop_reason` for Chat Completions' `finish_reason`.
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's usage for OpenAI's: cache reads reported beside the other prompt tokens.
pub fn messages_usage(usage: &oa::ChatUsage) -> an::Usage {
    let cached = usage.prompt_tokens_details.map_or(0, |d| d.cached_tokens);
    an::Usage {
        input_tokens: Some(usage.prompt_tokens.saturating_sub(cached)),
        output_tokens: usage.completion_tokens,
        cache_read_input_tokens: Some(cached),
        cache_creation_input_tokens: Some(0),
    }
}

/// A tool call's arguments as Anthropic's `input` object (`{}` for none; text that is not a
/// JSON object is kept as a string rather than lost).
pub fn input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(serde_json::Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => Value::String(arguments.to_owned()),
    }
}

/// A chat completion as a Messages answer.
pub fn answer(body: &[u8]) -> Vec<u8> {
    let completion: oa::ChatCompletion = match serde_json::from_slice(body) {
        Ok(completion) => completion,
        Err(e) => {
            let message = format!("Warden could not translate the provider's answer: {e}");
            return anthropic_error("api_error", message);
        }
    };
    let choice = completion.choices.into_iter().next();
    let finish = choice.as_ref().and_then(|c| c.finish_reason.clone());
    let message = choice.map(|c| c.message).unwrap_or_default();
    let mut content = Vec::new();
    let refused = message.refusal.is_some();
    for text in [message.content, message.refusal].into_iter().flatten() {
        if !text.is_empty() {
            content.push(an::AnswerBlock::Text { text });
        }
    }
    for call in message.tool_calls.into_iter().flatten() {
        content.push(an::AnswerBlock::ToolUse {
            input: input(&call.function.arguments),
            id: call.id,
            name: call.function.name,
        });
    }
    let stop = if refused {
        "refusal"
    } else {
        stop_reason(finish.as_deref())
    };
    to_vec(&an::MessagesAnswer {
        id: completion.id,
        kind: "message".into(),
        role: "assistant".into(),
        model: completion.model,
        content,
        stop_reason: Some(stop.into()),
        stop_sequence: None,
        usage: completion
            .usage
            .as_ref()
            .map(messages_usage)
            .unwrap_or_default(),
    })
}

/// Anthropic's error `type` for an HTTP status.
fn error_kind(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

fn anthropic_error(kind: &str, message: String) -> Vec<u8> {
    to_vec(&an::ErrorBody {
        kind: "error".into(),
        error: an::ErrorDetail {
            kind: kind.into(),
            message,
        },
    })
}

/// An OpenAI error body in Anthropic's shape (same status; a body that is not OpenAI's error
/// is quoted, cut short).
pub fn error(status: u16, body: &[u8]) -> Vec<u8> {
    let message = match serde_json::from_slice::<oa::ErrorBody>(body) {
        Ok(e) => e.error.message,
        Err(_) => super::quoted(status, body),
    };
    anthropic_error(error_kind(status), message)
}

/// The same error, for a stream (`error` event data).
pub fn stream_error(message: String) -> an::ErrorBody {
    an::ErrorBody {
        kind: "error".into(),
        error: an::ErrorDetail {
            kind: "api_error".into(),
            message,
        },
    }
}
