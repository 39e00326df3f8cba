"""Native translation: OpenAI-format agents reach Anthropic-format providers and the reverse,
with the real OpenAI (Python and Node) and Anthropic SDKs through the real binary."""

import base64
import json
import subprocess
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from harness import Warden, audit_record, eventually, sha256_hex
from mock_provider import MockProvider

KEY = "sk-translating-agent"
BUDGETED_KEY = "sk-translating-budgeted"
OPENAI_KEY = "sk-provider-openai-translation"
ANTHROPIC_KEY = "sk-provider-anthropic-translation"
NODE = Path(__file__).parent / "node"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
ANTHROPIC_WEATHER = {"name": "get_weather", "description": "Weather in a city",
                     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    provider = MockProvider(stream_interval=0.01)
    tmp = tmp_path_factory.mktemp("translation")
    w = Warden(f"""version: 1
audit:
  sink: {{file: {{path: {tmp}/audit.jsonl}}}}
  spool_dir: {tmp}/spool
providers:
  claude:
    base_url: {provider.base_url}
    api: anthropic
    models: ["claude-*", "bad-claude-*", "error-claude-*"]
    api_key_env: TEST_ANTHROPIC_KEY
    auth: x-api-key
  gpt:
    base_url: {provider.base_url}
    api: openai
    models: ["gpt-*", "bad-gpt-*"]
    api_key_env: TEST_OPENAI_KEY
  mock-anthropic:
    kind: mock
    api: anthropic
    models: ["mock-claude-*"]
  plain:
    base_url: {provider.base_url}
    models: ["plain-*"]
    api_key_env: TEST_OPENAI_KEY
agents:
  app:
    keys: [{{id: app-1, sha256: {sha256_hex(KEY)}}}]
    models: ["*"]
  budgeted:
    keys: [{{id: budgeted-1, sha256: {sha256_hex(BUDGETED_KEY)}}}]
    models: ["*"]
    limits: {{tokens_per_day: 1000000, default_output_tokens: 300}}
""", env={"TEST_OPENAI_KEY": OPENAI_KEY, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY})
    w.provider = provider
    w.audit_log = tmp / "audit.jsonl"
    yield w
    w.stop()
    provider.close()


def oai(env, key=KEY):
    return openai.OpenAI(base_url=env.base + "/v1", api_key=key, max_retries=0)


def claude(env, key=KEY):
    return anthropic.Anthropic(base_url=env.base, api_key=key, max_retries=0)


def tokens_used(env, agent):
    return httpx.get(env.admin + f"/v1/agents/{agent}/usage", timeout=5).json()["tokens"]["day"]["used"]


# === OpenAI-format agent, Anthropic-format provider ===

def test_chat_reaches_anthropic_as_messages(env):
    r = oai(env).chat.completions.create(
        model="claude-sonnet-4-cached", temperature=0.5, stop=["END"], user="user-7",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "developer", "content": "Use French."},
                  {"role": "user", "content": "hi"}])
    assert r.object == "chat.completion"
    assert r.choices[0].message.content == "hello from mock"
    assert r.choices[0].finish_reason == "stop"
    # Anthropic's 11 input tokens plus 100 cache reads and 50 cache writes.
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (161, 4, 165)
    assert r.usage.prompt_tokens_details.cached_tokens == 100
    seen = env.provider.last()
    assert seen.path == "/v1/messages"
    assert seen.header("x-api-key") == ANTHROPIC_KEY and seen.header("authorization") is None
    assert seen.header("anthropic-version") == "2023-06-01"
    body = seen.json()
    assert body["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert body["max_tokens"] == 1024, "no cap: the agent's default_output_tokens"
    assert (body["temperature"], body["stop_sequences"], body["metadata"]) == (0.5, ["END"], {"user_id": "user-7"})


def test_a_full_tool_call_round_trip(env):
    client = oai(env)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="claude-tools", messages=messages, tools=[WEATHER],
                                           tool_choice="required", parallel_tool_calls=False, max_tokens=200)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    [call] = choice.message.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("toolu_1", "get_weather", {"city": "Paris"})
    sent = env.provider.last().json()
    assert sent["tools"] == [ANTHROPIC_WEATHER]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
                 {"role": "user", "content": "Thanks."}]
    second = client.chat.completions.create(model="claude-tools", messages=messages, tools=[WEATHER], max_tokens=200)
    assert second.choices[0].message.content.startswith("the tool said: ")
    sent = env.provider.last().json()["messages"]
    assert sent[1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]}
    assert sent[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C and sunny"},
        {"type": "text", "text": "Thanks."}]}, "the tool result and the next words share one user turn"


def test_images_as_data_and_https_urls(env):
    oai(env).chat.completions.create(model="claude-sonnet-4", max_tokens=20, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}])
    [message] = env.provider.last().json()["messages"]
    assert message["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]


def test_a_stream_with_a_tool_call_and_its_usage(env):
    stream = oai(env).chat.completions.create(model="claude-tools", tools=[WEATHER], stream=True,
                                              stream_options={"include_usage": True}, max_tokens=100,
                                              messages=[{"role": "user", "content": "Weather?"}])
    text, args, names, finish, usage = "", "", [], None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            delta = chunk.choices[0].delta
            text += delta.content or ""
            for call in delta.tool_calls or []:
                names += [call.function.name] if call.function and call.function.name else []
                args += (call.function.arguments or "") if call.function else ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert (text, names, json.loads(args), finish) == ("Let me check.", ["get_weather"], {"city": "Paris"}, "tool_calls")
    assert (usage.prompt_tokens, usage.completion_tokens) == (30, 12)
    assert env.provider.last().json()["stream"] is True


def test_a_stream_without_include_usage_has_no_usage_chunk(env):
    with httpx.stream("POST", env.base + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=10,
                      json={"model": "claude-sonnet-4", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "one two"
    assert all(c["choices"] and "usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_provider_errors_in_openai_shape(env):
    with pytest.raises(openai.BadRequestError) as err:
        oai(env).chat.completions.create(model="bad-claude-x", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 400
    assert err.value.body["message"] == "bad request from provider"
    assert err.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.InternalServerError) as err:
        oai(env).chat.completions.create(model="error-claude-x", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["message"] == "provider exploded"


@pytest.mark.parametrize("extra, named", [
    ({"n": 2}, "`n`"),
    ({"seed": 7}, "`seed`"),
    ({"temperature": 1.5}, "`temperature`"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}, "input_audio"),
    ({"reasoning_effort": "high", "max_tokens": 100}, "thinking budget"),
    ({"tools": [dict(WEATHER, function=dict(WEATHER["function"], strict=True))]}, "strict"),
])
def test_what_anthropic_cannot_take_is_refused(env, extra, named):
    before = len(env.provider.requests)
    body = {"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}], **extra}
    r = httpx.post(env.base + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert r.status_code == 400, r.text
    assert r.headers["x-warden-error"] == "untranslatable_request"
    error = r.json()["error"]
    assert error["code"] == "untranslatable_request" and named in error["message"], error
    assert "Anthropic" in error["message"]
    assert len(env.provider.requests) == before, "nothing reached the provider"


def test_an_openai_endpoint_anthropic_lacks_is_refused(env):
    with pytest.raises(openai.BadRequestError) as err:
        oai(env).embeddings.create(model="claude-sonnet-4", input="hi")
    assert err.value.code == "untranslatable_request"
    assert "/v1/embeddings" in err.value.message


def test_reasoning_effort_becomes_a_thinking_budget(env):
    oai(env).chat.completions.create(model="claude-sonnet-4", reasoning_effort="low",
                                     messages=[{"role": "user", "content": "hi"}])
    body = env.provider.last().json()
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert body["max_tokens"] == 1024 + 1024, "room for the answer beside the budget"


def test_translated_calls_are_metered_and_budgeted_exactly(env):
    before = tokens_used(env, "budgeted")
    oai(env, BUDGETED_KEY).chat.completions.create(model="claude-sonnet-4-cached", messages=[{"role": "user", "content": "hi"}])
    assert env.provider.last().json()["max_tokens"] == 300, "the agent's default_output_tokens"
    eventually(lambda: tokens_used(env, "budgeted") - before == 165)
    before = tokens_used(env, "budgeted")
    claude(env, BUDGETED_KEY).messages.create(model="gpt-4o-cached", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    eventually(lambda: tokens_used(env, "budgeted") - before == 18)


def test_the_openai_node_sdk_against_an_anthropic_provider(env):
    out = subprocess.run(["node", str(NODE / "openai_chat.mjs"), env.base, KEY, "claude-sonnet-4"],
                         capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(out.stdout)
    assert seen["chat"]["content"] == "hello from mock" and seen["chat"]["finish"] == "stop"
    assert seen["chat"]["usage"]["prompt_tokens"] == 11
    assert seen["stream"] == {"text": "Let me check.", "name": "get_weather", "args": '{"city": "Paris"}',
                              "finish": "tool_calls", "usage": seen["stream"]["usage"]}
    assert seen["stream"]["usage"]["completion_tokens"] == 12
    assert seen["error"]["status"] == 400 and "bad request from provider" in seen["error"]["message"]


# === Anthropic-format agent, OpenAI-format provider ===

def test_messages_reach_openai_as_chat_completions(env):
    msg = claude(env).messages.create(model="gpt-4o-cached", max_tokens=64, system="Be brief.", extra_body={"temperature": 0.3},
                                      stop_sequences=["END"], metadata={"user_id": "user-9"},
                                      messages=[{"role": "user", "content": "hi"}])
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].text == "hello from mock"
    assert msg.stop_reason == "end_turn"
    # OpenAI's 13 prompt tokens include the 8 cached ones.
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.output_tokens) == (5, 8, 5)
    seen = env.provider.last()
    assert seen.path == "/v1/chat/completions"
    assert seen.header("authorization") == f"Bearer {OPENAI_KEY}"
    assert seen.header("x-api-key") is None and seen.header("anthropic-version") is None
    body = seen.json()
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert (body["max_completion_tokens"], body["temperature"], body["stop"], body["user"]) == (64, 0.3, ["END"], "user-9")


def test_a_full_tool_use_round_trip_with_the_anthropic_sdk(env):
    client = claude(env)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(model="gpt-4o-tools", max_tokens=100, tools=[ANTHROPIC_WEATHER], messages=messages,
                                   tool_choice={"type": "tool", "name": "get_weather"})
    assert first.stop_reason == "tool_use"
    text, use = first.content
    assert text.text == "Let me check."
    assert (use.type, use.id, use.name, use.input) == ("tool_use", "call_1", "get_weather", {"city": "Paris"})
    sent = env.provider.last().json()
    assert sent["tools"] == [WEATHER]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "18C"}]}]
    second = client.messages.create(model="gpt-4o-tools", max_tokens=100, tools=[ANTHROPIC_WEATHER], messages=messages)
    assert second.content[0].text == "the tool said: 18C"
    sent = env.provider.last().json()["messages"]
    assert sent[1] == {"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    assert sent[2] == {"role": "tool", "content": "18C", "tool_call_id": "call_1"}


def test_a_stream_with_tool_use_as_anthropic_events(env):
    with claude(env).messages.stream(model="gpt-4o-tools", max_tokens=100, tools=[ANTHROPIC_WEATHER],
                                     messages=[{"role": "user", "content": "Weather?"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.stop_reason == "tool_use"
    assert final.content[0].text == "Let me check."
    assert (final.content[1].name, final.content[1].input) == ("get_weather", {"city": "Paris"})
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 12)
    assert env.provider.last().json()["stream_options"] == {"include_usage": True}


def test_a_text_stream_reads_as_anthropic_text(env):
    with claude(env).messages.stream(model="gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "one two three"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (21, 3)


def test_base64_images_become_data_urls(env):
    claude(env).messages.create(model="gpt-4o", max_tokens=20, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "What is this?"}]}])
    [message] = env.provider.last().json()["messages"]
    assert message["content"] == [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                                  {"type": "text", "text": "What is this?"}]


def test_provider_errors_in_anthropic_shape(env):
    with pytest.raises(anthropic.BadRequestError) as err:
        claude(env).messages.create(model="bad-gpt-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 400
    assert err.value.body == {"type": "error", "error": {"type": "invalid_request_error",
                                                         "message": "bad request from provider"}}


def test_what_openai_cannot_take_is_refused_in_anthropic_shape(env):
    before = len(env.provider.requests)
    with pytest.raises(anthropic.BadRequestError) as err:
        claude(env).messages.create(model="gpt-4o", max_tokens=10, extra_body={"top_k": 5}, messages=[{"role": "user", "content": "hi"}])
    assert err.value.response.headers["x-warden-error"] == "untranslatable_request"
    assert "`top_k`" in err.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as err:
        claude(env).messages.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "/v1/messages/count_tokens" in err.value.body["error"]["message"]
    assert len(env.provider.requests) == before


def test_a_provider_without_api_speaks_openai(env):
    msg = claude(env).messages.create(model="plain-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "hello from mock"
    assert env.provider.last().path == "/v1/chat/completions"


def test_translated_calls_are_audited_and_counted_under_the_agents_model(env):
    r = claude(env).messages.with_raw_response.create(model="gpt-4o-mini", max_tokens=10,
                                                      messages=[{"role": "user", "content": "hi"}])
    record = audit_record(env.audit_log, r.headers["x-request-id"])
    assert (record["model"], record["provider"], record["translation"]) == ("gpt-4o-mini", "gpt", "messages_to_chat")
    assert record["tokens"] == {"input": 13, "output": 5}
    r = oai(env).chat.completions.with_raw_response.create(model="claude-sonnet-4", messages=[{"role": "user", "content": "hi"}])
    assert audit_record(env.audit_log, r.headers["x-request-id"])["translation"] == "chat_to_messages"
    r = oai(env).chat.completions.with_raw_response.create(model="plain-model", messages=[{"role": "user", "content": "hi"}])
    assert "translation" not in audit_record(env.audit_log, r.headers["x-request-id"])
    def counted():
        text = env.metrics()
        assert 'warden_requests_total{agent="app",code="ok",model="_other",provider="gpt"}' in text
    eventually(counted)


def test_the_built_in_mock_can_speak_anthropic_only(env):
    before = len(env.provider.requests)
    stream = oai(env).chat.completions.create(model="mock-claude-haiku", stream=True, stream_options={"include_usage": True},
                                              messages=[{"role": "user", "content": "hello there"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock reply from Warden to: hello there"
    assert chunks[-1].usage.prompt_tokens == 2
    assert len(env.provider.requests) == before


def test_check_names_a_wrong_api_at_its_position(tmp_path):
    from harness import run_warden_cli
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nproviders:\n  g:\n    base_url: http://127.0.0.1:9/v1\n    api: gemini\n"
                      "    models: ['g-*']\n    auth: none\n")
    r = run_warden_cli("check", str(policy))
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert f"{policy}:5:10" in out and "gemini" in out, out
