//! What translating a model call costs: the request one way (Chat Completions → Messages and
//! back), the answer the other way, and a stream per event — beside what reading the same
//! body costs Warden anyway (`proxy::request::body_fields`), so the extra is plain.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use warden::proxy::request::body_fields;
use warden::translate::{self, Direction, Stream};

/// A ~1.2 KB chat request: system prompt, two turns, one tool and a tool round trip.
fn chat_request() -> Vec<u8> {
    let prose = "Summarise the incident report in three bullet points and name the owner of each follow-up action. ";
    serde_json::to_vec(&json!({
        "model": "claude-sonnet-4-5", "max_tokens": 512, "temperature": 0.2, "stream": false,
        "messages": [
            {"role": "system", "content": prose.repeat(2)},
            {"role": "user", "content": prose.repeat(3)},
            {"role": "assistant", "content": "Looking it up.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_report", "arguments": "{\"id\":\"INC-42\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": prose.repeat(2)},
        ],
        "tools": [{"type": "function", "function": {"name": "get_report", "description": "Fetch a report",
                   "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}}],
    }))
    .unwrap_or_default()
}

fn messages_request() -> Vec<u8> {
    let chat = chat_request();
    translate::request(Direction::ChatToMessages, &chat, 1024)
        .map(|t| t.body)
        .unwrap_or_default()
}

const ANTHROPIC_ANSWER: &[u8] = br#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"- The database failover took 14 minutes (owner: SRE).\n- Alerts fired late (owner: observability).\n- The runbook was out of date (owner: platform)."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":312,"output_tokens":48,"cache_read_input_tokens":0,"cache_creation_input_tokens":0}}"#;
const OPENAI_ANSWER: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"- The database failover took 14 minutes (owner: SRE).\n- Alerts fired late (owner: observability).\n- The runbook was out of date (owner: platform).","refusal":null},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":312,"completion_tokens":48,"total_tokens":360}}"#;

/// An Anthropic stream of 20 events, as a provider writes them (one text block).
fn anthropic_stream() -> Vec<u8> {
    let mut s = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for _ in 0..15 {
        s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a few words \"}}\n\n");
    }
    s.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":45}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

/// A Chat Completions stream of 20 events (18 content chunks, the usage chunk, `[DONE]`).
fn openai_stream() -> Vec<u8> {
    let mut s = String::new();
    for _ in 0..18 {
        s.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a few words \"},\"finish_reason\":null}]}\n\n");
    }
    s.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":45,\"total_tokens\":54}}\n\ndata: [DONE]\n\n");
    s.into_bytes()
}

/// Translates a stream fed event by event, as providers write them.
fn run_stream(direction: Direction, events: &[&[u8]]) -> usize {
    let mut stream = Stream::new(direction, true, 0);
    let mut out = Vec::new();
    for event in events {
        stream.feed(event, &mut out);
    }
    stream.finish(&mut out);
    out.len()
}

fn split_events(stream: &[u8]) -> Vec<&[u8]> {
    let mut events = Vec::new();
    let mut at = 0;
    while let Some(end) = memchr::memmem::find(&stream[at..], b"\n\n") {
        events.push(&stream[at..at + end + 2]);
        at += end + 2;
    }
    events
}

fn translation(c: &mut Criterion) {
    let chat = chat_request();
    let messages = messages_request();
    println!(
        "request sizes: chat {} B, messages {} B",
        chat.len(),
        messages.len()
    );
    c.bench_function("read_chat_request_fields", |b| {
        b.iter(|| body_fields(black_box(&chat)).map(|f| f.choices))
    });
    c.bench_function("chat_request_to_messages", |b| {
        b.iter(|| {
            translate::request(Direction::ChatToMessages, black_box(&chat), 1024)
                .map(|t| t.body.len())
        })
    });
    c.bench_function("messages_request_to_chat", |b| {
        b.iter(|| {
            translate::request(Direction::MessagesToChat, black_box(&messages), 1024)
                .map(|t| t.body.len())
        })
    });
    c.bench_function("messages_answer_to_chat", |b| {
        b.iter(|| {
            translate::answer(
                Direction::ChatToMessages,
                200,
                black_box(ANTHROPIC_ANSWER),
                1,
            )
            .len()
        })
    });
    c.bench_function("chat_answer_to_messages", |b| {
        b.iter(|| {
            translate::answer(Direction::MessagesToChat, 200, black_box(OPENAI_ANSWER), 1).len()
        })
    });
    let anthropic = anthropic_stream();
    let anthropic_events = split_events(&anthropic);
    c.bench_function("messages_stream_to_chat_20_events", |b| {
        b.iter(|| run_stream(Direction::ChatToMessages, black_box(&anthropic_events)))
    });
    let openai = openai_stream();
    let openai_events = split_events(&openai);
    c.bench_function("chat_stream_to_messages_20_events", |b| {
        b.iter(|| run_stream(Direction::MessagesToChat, black_box(&openai_events)))
    });
}

criterion_group!(benches, translation);
criterion_main!(benches);
