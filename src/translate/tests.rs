use proptest::prelude::*;
use serde_json::{json, Value};

use super::anthropic::MessagesRequest;
use super::openai::ChatRequest;
use super::*;

fn to_messages(chat: Value) -> Result<Value, Untranslatable> {
    let body = serde_json::to_vec(&chat).unwrap();
    let t = request(Direction::ChatToMessages, &body, 1000)?;
    Ok(serde_json::from_slice(&t.body).unwrap())
}

fn to_chat(messages: Value) -> Result<Value, Untranslatable> {
    let body = serde_json::to_vec(&messages).unwrap();
    let t = request(Direction::MessagesToChat, &body, 1000)?;
    Ok(serde_json::from_slice(&t.body).unwrap())
}

#[test]
fn chat_tool_turns_become_alternating_messages() {
    let out = to_messages(json!({
        "model": "claude", "max_tokens": 50,
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "b", "type": "function", "function": {"name": "w", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "a", "content": "18C"},
            {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "20C"}]},
        ]
    }))
    .unwrap();
    assert_eq!(out["max_tokens"], 50);
    assert_eq!(
        out["messages"][1]["content"],
        json!([
            {"type": "tool_use", "id": "a", "name": "w", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "b", "name": "w", "input": {}}
        ])
    );
    assert_eq!(
        out["messages"][2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "a", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "b", "content": [{"type": "text", "text": "20C"}]}
        ]})
    );
}

#[test]
fn what_has_no_counterpart_is_refused_by_name() {
    let refused = |body: Value| to_messages(body).unwrap_err().0;
    let base = |extra: Value| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    assert!(refused(base(json!({"logprobs": true}))).contains("`logprobs: true`"));
    assert!(refused(base(json!({"top_logprobs": 2}))).contains("`top_logprobs`"));
    assert!(refused(base(json!({"presence_penalty": 0.5}))).contains("penalties"));
    let neutral = json!({"logprobs": false, "presence_penalty": 0, "frequency_penalty": 0.0,
                         "response_format": {"type": "text"}, "n": 1, "store": false});
    assert!(
        to_messages(base(neutral)).is_ok(),
        "values that mean what absence means translate"
    );
    assert!(refused(base(json!({"n": 3}))).contains("`n`"));
    assert!(
        refused(base(json!({"response_format": {"type": "json_object"}}))).contains("json_object")
    );
    assert!(refused(base(json!({"reasoning_effort": "extreme"}))).contains("extreme"));
    let audio = json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]});
    assert!(refused(base(audio)).contains("input_audio"));
    let named = json!({"messages": [{"role": "user", "content": "hi", "name": "bob"}]});
    assert!(refused(base(named)).contains("`name`"));
    let bad_args = json!({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "w", "arguments": "[1]"}}]}]});
    assert!(refused(base(bad_args)).contains("not a JSON object"));
    let svg = json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/svg+xml;base64,PHN2Zz4="}}]}]});
    assert!(refused(base(svg)).contains("image/svg+xml"));
    let refused = |body: Value| to_chat(body).unwrap_err().0;
    let server_tool = json!({"model": "m", "max_tokens": 5, "messages": [],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
    assert!(refused(server_tool).contains("web_search_20250305"));
    let document = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]});
    assert!(refused(document).contains("document"));
    assert!(refused(json!({"model": "m", "messages": []})).contains("max_tokens"));
}

#[test]
fn messages_tool_results_come_first_and_errors_say_so() {
    let out = to_chat(json!({
        "model": "gpt", "max_tokens": 10, "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 5000},
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                                              {"type": "tool_use", "id": "t", "name": "w", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": true, "content": "boom"},
                                         {"type": "text", "text": "go on"}]}
        ]
    }))
    .unwrap();
    assert_eq!(
        out["messages"][0],
        json!({"role": "system", "content": [{"type": "text", "text": "S"}]})
    );
    assert_eq!(
        out["messages"][1],
        json!({"role": "assistant", "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "w", "arguments": "{\"a\":1}"}}]})
    );
    assert_eq!(
        out["messages"][2],
        json!({"role": "tool", "tool_call_id": "t", "content": [
            {"type": "text", "text": "Error:"}, {"type": "text", "text": "boom"}]})
    );
    assert_eq!(
        out["messages"][3]["content"],
        json!([{"type": "text", "text": "go on"}])
    );
    assert_eq!(out["reasoning_effort"], "medium");
    assert_eq!(
        (
            out["tool_choice"].clone(),
            out["parallel_tool_calls"].clone()
        ),
        (json!("auto"), json!(false))
    );
}

#[test]
fn answers_carry_tool_calls_stop_reasons_and_usage() {
    let anthropic = json!({"id": "msg", "type": "message", "role": "assistant", "model": "c",
        "content": [{"type": "thinking", "thinking": "…", "signature": "x"}, {"type": "text", "text": "ok"},
                    {"type": "tool_use", "id": "t", "name": "w", "input": {"a": 1}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 5}});
    let chat: Value = serde_json::from_slice(&answer(
        Direction::ChatToMessages,
        200,
        &serde_json::to_vec(&anthropic).unwrap(),
        7,
    ))
    .unwrap();
    assert_eq!(chat["created"], 7);
    assert_eq!(chat["choices"][0]["message"]["content"], "ok");
    assert_eq!(
        chat["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"a\":1}"
    );
    assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        chat["usage"],
        json!({"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 5}})
    );
    let openai = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "g",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "t", "type": "function", "function": {"name": "w", "arguments": "{\"a\":1}"}}]},
            "finish_reason": "length"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}});
    let msg: Value = serde_json::from_slice(&answer(
        Direction::MessagesToChat,
        200,
        &serde_json::to_vec(&openai).unwrap(),
        0,
    ))
    .unwrap();
    assert_eq!(
        msg["content"],
        json!([{"type": "tool_use", "id": "t", "name": "w", "input": {"a": 1}}])
    );
    assert_eq!(msg["stop_reason"], "max_tokens");
    assert_eq!(msg["usage"]["input_tokens"], 10);
}

#[test]
fn errors_keep_their_meaning_in_the_other_shape() {
    let oa: Value = serde_json::from_slice(&answer(
        Direction::ChatToMessages,
        429,
        br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        0,
    ))
    .unwrap();
    assert_eq!(
        oa,
        json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": null}})
    );
    let an: Value = serde_json::from_slice(&answer(
        Direction::MessagesToChat,
        502,
        b"<html>Bad gateway</html>",
        0,
    ))
    .unwrap();
    assert_eq!(an["type"], "error");
    assert_eq!(an["error"]["type"], "api_error");
    assert_eq!(
        an["error"]["message"],
        "the provider answered 502: <html>Bad gateway</html>"
    );
}

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
    "event: ping\ndata: {\"type\":\"ping\"}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"w\",\"input\":{}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":6}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"t\",\"type\":\"function\",\"function\":{\"name\":\"w\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":6,\"total_tokens\":15}}\n\n",
    "data: [DONE]\n\n",
);

/// The translated stream, fed in pieces of `size` bytes.
fn translate_stream(direction: Direction, stream: &[u8], size: usize) -> Vec<u8> {
    let mut t = Stream::new(direction, true, 5);
    let mut out = Vec::new();
    for piece in stream.chunks(size) {
        t.feed(piece, &mut out);
    }
    t.finish(&mut out);
    out
}

/// The `data` of each event of a stream, as JSON (`[DONE]` as a string).
fn events(stream: &[u8]) -> Vec<Value> {
    String::from_utf8(stream.to_vec())
        .unwrap()
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.into())))
        .collect()
}

#[test]
fn an_anthropic_stream_reads_as_chat_chunks_however_it_is_cut() {
    let whole = translate_stream(
        Direction::ChatToMessages,
        ANTHROPIC_STREAM.as_bytes(),
        ANTHROPIC_STREAM.len(),
    );
    for size in [1, 7, 100] {
        assert_eq!(
            translate_stream(Direction::ChatToMessages, ANTHROPIC_STREAM.as_bytes(), size),
            whole
        );
    }
    let chunks = events(&whole);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hi");
    assert_eq!(
        chunks[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "w"
    );
    let args: String = chunks[3..5]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(args, "{\"a\":1}");
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[6]["usage"]["prompt_tokens"], 9);
    assert_eq!(chunks[6]["usage"]["completion_tokens"], 6);
    assert_eq!(chunks[7], "[DONE]");
    assert_eq!(chunks.len(), 8);
}

#[test]
fn an_openai_stream_reads_as_anthropic_events_however_it_is_cut() {
    let whole = translate_stream(
        Direction::MessagesToChat,
        OPENAI_STREAM.as_bytes(),
        OPENAI_STREAM.len(),
    );
    for size in [1, 13, 200] {
        assert_eq!(
            translate_stream(Direction::MessagesToChat, OPENAI_STREAM.as_bytes(), size),
            whole
        );
    }
    let kinds: Vec<String> = events(&whole)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let text = String::from_utf8(whole).unwrap();
    assert!(text.starts_with("event: message_start\ndata: "));
    let delta = &events(text.as_bytes())[7];
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        (
            delta["usage"]["input_tokens"].clone(),
            delta["usage"]["output_tokens"].clone()
        ),
        (json!(9), json!(6))
    );
}

#[test]
fn a_stream_cut_before_its_end_stays_cut() {
    let cut = &ANTHROPIC_STREAM[..ANTHROPIC_STREAM.find("event: message_delta").unwrap()];
    let out = translate_stream(Direction::ChatToMessages, cut.as_bytes(), cut.len());
    assert!(!String::from_utf8(out).unwrap().contains("[DONE]"));
    let cut = &OPENAI_STREAM[..OPENAI_STREAM.find("{\"index\":0,\"delta\":{},").unwrap() - 100];
    let out = translate_stream(Direction::MessagesToChat, cut.as_bytes(), 9);
    assert!(!String::from_utf8(out).unwrap().contains("message_stop"));
}

// === property tests: whatever the translator accepts, the other side can read ===

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 é\"\\\\\n{}]{0,12}"
}

fn chat_message() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(|t| json!({"role": "system", "content": t})),
        text().prop_map(|t| json!({"role": "user", "content": t})),
        (text(), any::<bool>()).prop_map(|(t, https)| json!({"role": "user", "content": [
            {"type": "text", "text": t},
            {"type": "image_url", "image_url": {"url": if https { "https://x/y.png".to_owned() } else { format!("data:image/webp;base64,{t}") }}}
        ]})),
        (text(), text()).prop_map(|(t, arg)| json!({"role": "assistant", "content": t, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": json!({"x": arg}).to_string()}}]})),
        text().prop_map(|t| json!({"role": "assistant", "content": [{"type": "refusal", "refusal": t}]})),
        text().prop_map(|t| json!({"role": "tool", "tool_call_id": "c1", "content": t})),
        text().prop_map(|t| json!({"role": "user", "content": [{"type": "input_audio", "input_audio": t}]})),
    ]
}

fn chat_request() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(chat_message(), 0..8),
        prop::option::of(0u64..5000),
        prop::option::of(0.0f64..2.0),
        prop::option::of(prop_oneof![Just("low"), Just("high"), Just("none"), Just("max")]),
        prop::option::of(prop_oneof![Just(json!("auto")), Just(json!("required")), Just(json!({"type": "function", "function": {"name": "f"}}))]),
        any::<bool>(),
        prop::option::of(1u64..3),
    )
        .prop_map(|(messages, cap, temperature, effort, choice, stream, n)| {
            let mut r = json!({"model": "m", "messages": messages, "stream": stream,
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]});
            let o = r.as_object_mut().unwrap();
            for (k, v) in [("max_tokens", cap.map(Value::from)), ("temperature", temperature.map(Value::from)),
                           ("reasoning_effort", effort.map(Value::from)), ("tool_choice", choice), ("n", n.map(Value::from))] {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            }
            r
        })
}

fn messages_block() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(|t| json!({"type": "text", "text": t})),
        text().prop_map(|t| json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": t}})),
        (text(), any::<bool>()).prop_map(|(t, e)| json!({"type": "tool_result", "tool_use_id": "u", "content": t, "is_error": e})),
        text().prop_map(|t| json!({"type": "tool_use", "id": "u", "name": "f", "input": {"x": t}})),
        text().prop_map(|t| json!({"type": "thinking", "thinking": t, "signature": "s"})),
        text().prop_map(|t| json!({"type": "document", "source": t})),
    ]
}

fn messages_request() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((any::<bool>(), prop::collection::vec(messages_block(), 1..4)), 0..6),
        prop::option::of(text()),
        1u64..5000,
        prop::option::of(0u64..30_000),
        any::<bool>(),
        prop::option::of(1u64..5),
    )
        .prop_map(|(messages, system, max_tokens, budget, stream, top_k)| {
            let messages: Vec<Value> = messages
                .into_iter()
                .map(|(user, content)| json!({"role": if user { "user" } else { "assistant" }, "content": content}))
                .collect();
            let mut r = json!({"model": "m", "max_tokens": max_tokens, "messages": messages, "stream": stream,
                "tools": [{"name": "f", "input_schema": {"type": "object"}}]});
            let o = r.as_object_mut().unwrap();
            if let Some(s) = system {
                o.insert("system".into(), s.into());
            }
            if let Some(b) = budget {
                o.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": b}));
            }
            if let Some(k) = top_k {
                o.insert("top_k".into(), k.into());
            }
            r
        })
}

proptest! {
    #[test]
    fn accepted_chat_requests_are_valid_messages_requests(chat in chat_request()) {
        let body = serde_json::to_vec(&chat).unwrap();
        if let Ok(t) = request(Direction::ChatToMessages, &body, 1024) {
            let out: MessagesRequest = serde_json::from_slice(&t.body).expect("a valid Messages request");
            prop_assert!(out.max_tokens > 0 || chat["max_tokens"] == 0);
            prop_assert_eq!(Some(out.max_tokens), t.max_tokens);
            for pair in out.messages.windows(2) {
                prop_assert_ne!(pair[0].role, pair[1].role, "roles alternate");
            }
            if let Some(super::anthropic::Thinking::Enabled { budget_tokens }) = out.thinking {
                prop_assert!(budget_tokens < out.max_tokens);
            }
            prop_assert!(out.temperature.is_none_or(|t| t <= 1.0));
        }
    }

    #[test]
    fn accepted_messages_requests_are_valid_chat_requests(messages in messages_request()) {
        let body = serde_json::to_vec(&messages).unwrap();
        if let Ok(t) = request(Direction::MessagesToChat, &body, 1024) {
            let out: ChatRequest = serde_json::from_slice(&t.body).expect("a valid Chat Completions request");
            prop_assert_eq!(out.max_completion_tokens, messages["max_tokens"].as_u64());
            prop_assert_eq!(out.stream_options.is_some(), out.stream == Some(true));
            let results = messages["messages"].as_array().unwrap().iter()
                .flat_map(|m| m["content"].as_array().unwrap())
                .filter(|b| b["type"] == "tool_result").count();
            let tools = out.messages.iter().filter(|m| matches!(m, super::openai::ChatMessage::Tool { .. })).count();
            prop_assert_eq!(results, tools, "every tool result is carried");
        }
    }

    #[test]
    fn streams_never_panic_and_do_not_depend_on_where_they_are_cut(
        bytes in prop::collection::vec(any::<u8>(), 0..400), size in 1usize..50, anthropic in any::<bool>()
    ) {
        let (direction, valid) = if anthropic {
            (Direction::ChatToMessages, ANTHROPIC_STREAM)
        } else {
            (Direction::MessagesToChat, OPENAI_STREAM)
        };
        let mut stream = valid.as_bytes().to_vec();
        stream.extend_from_slice(&bytes);
        let whole = translate_stream(direction, &stream, stream.len().max(1));
        let out = translate_stream(direction, &stream, size);
        prop_assert_eq!(out, whole);
    }
}
