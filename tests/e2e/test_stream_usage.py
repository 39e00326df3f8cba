"""Exact usage on OpenAI streams the client did not ask usage for: Warden asks the provider
(`stream_options.include_usage`), meters the real count, and hides the extra chunk."""

import json

import httpx
import openai
import pytest

from conftest import AGENT_KEY, PROVIDER_ENV, standard_policy
from harness import Warden, audit_record
from mock_provider import MockProvider


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream-usage")
    provider = MockProvider(stream_interval=0.01)
    log = tmp / "audit.jsonl"
    w = Warden(standard_policy(provider.base_url) + f"audit:\n  sink: {{file: {{path: {log}}}}}\n  spool_dir: {tmp / 'spool'}\n",
               env=PROVIDER_ENV)
    w.provider, w.audit_log = provider, log
    yield w
    w.stop()
    provider.close()


def audited(env, request_id):
    return audit_record(env.audit_log, request_id)


def test_the_openai_sdk_stream_is_metered_without_asking(env):
    client = openai.OpenAI(base_url=env.base + "/v1", api_key=AGENT_KEY, max_retries=0,
                           default_headers={"X-Request-ID": "sdk-stream-1"})
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert all(c.choices for c in chunks), "the usage chunk Warden asked for is hidden"
    assert all(c.usage is None for c in chunks)
    sent = env.provider.last().json()
    assert sent["stream_options"] == {"include_usage": True}, "Warden asked the provider for usage"
    record = audited(env, "sdk-stream-1")
    assert record["tokens"] == {"input": 21, "output": 3}


def test_a_client_that_asked_for_usage_gets_it_and_its_body_untouched(env):
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
                       "messages": []}).encode()
    with httpx.stream("POST", env.base + "/v1/chat/completions", content=body, timeout=10,
                      headers={"Authorization": f"Bearer {AGENT_KEY}", "Content-Type": "application/json",
                               "X-Request-ID": "asked-1"}) as r:
        text = "".join(r.iter_text())
    assert '"choices": [], "usage": {"prompt_tokens": 21' in text
    assert env.provider.last().body == body
    assert audited(env, "asked-1")["tokens"] == {"input": 21, "output": 3}


def test_stream_options_without_include_usage_is_completed(env):
    r = httpx.post(env.base + "/v1/chat/completions", timeout=10,
                   headers={"Authorization": f"Bearer {AGENT_KEY}", "X-Request-ID": "opts-1"},
                   json={"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": False}})
    assert r.status_code == 200 and '"usage": {' not in r.text and "data: [DONE]" in r.text
    assert env.provider.last().json()["stream_options"] == {"include_usage": True}
    assert audited(env, "opts-1")["tokens"] == {"input": 21, "output": 3}


def data_events(text):
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


@pytest.mark.parametrize("options", [None, {"include_usage": False}, {}])
def test_a_client_that_did_not_ask_sees_no_usage_member_at_all(env, options):
    body = {"model": "gpt-4o-mini", "stream": True, "messages": []}
    if options is not None:
        body["stream_options"] = options
    r = httpx.post(env.base + "/v1/chat/completions", json=body, timeout=10,
                   headers={"Authorization": f"Bearer {AGENT_KEY}"})
    assert env.provider.last().json()["stream_options"]["include_usage"] is True
    events = data_events(r.text)
    assert len(events) == 5, "no extra chunk"
    assert all("usage" not in event for event in events), events
    assert r.text.rstrip().endswith("data: [DONE]")


def test_a_client_that_asked_sees_usage_null_as_the_provider_sends_it(env):
    r = httpx.post(env.base + "/v1/chat/completions", timeout=10,
                   headers={"Authorization": f"Bearer {AGENT_KEY}"},
                   json={"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True}})
    events = data_events(r.text)
    assert all(event["usage"] is None for event in events[:-1])
    assert events[-1]["usage"]["prompt_tokens"] == 21


def test_a_client_leaving_mid_stream_is_billed_what_the_provider_reports(env):
    import socket
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": []}).encode()
    s = socket.create_connection(("127.0.0.1", env.port))
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {AGENT_KEY}\r\n"
               f"X-Request-ID: leaves-1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    s.close()
    record = audited(env, "leaves-1")
    assert record["code"] == "client_closed"
    assert record["tokens"] == {"input": 21, "output": 3} and record["tokens_source"] == "reported"


def test_a_stream_broken_before_its_report_is_billed_an_estimate(env):
    body = {"model": "gpt-4o-mini", "stream": True, "messages": []}
    env.provider.stream_interval = 0.01
    with httpx.stream("POST", env.base + "/v1/chat/completions", json={**body, "model": "broken-model"}, timeout=10,
                      headers={"Authorization": f"Bearer {AGENT_KEY}", "X-Request-ID": "broken-1"}) as r:
        with pytest.raises(httpx.HTTPError):
            for _ in r.iter_bytes():
                pass
    record = audited(env, "broken-1")
    assert record["code"] == "upstream_unavailable"
    assert record["tokens_source"] == "estimated"
    assert record["tokens"]["output"] == 2, record
    assert record["tokens"]["input"] > 0


def test_langchain_chat_openai_stream_without_stream_usage_is_metered(env):
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=env.base + "/v1", api_key=AGENT_KEY, max_retries=0,
                     default_headers={"X-Request-ID": "langchain-1"})
    chunks = list(llm.stream("hi"))
    assert "".join(c.content for c in chunks) == "one two three"
    assert all(not c.usage_metadata for c in chunks), "LangChain did not ask for usage and sees none"
    assert "stream_options" in env.provider.last().json()
    assert audited(env, "langchain-1")["tokens"] == {"input": 21, "output": 3}


def test_the_anthropic_sdk_stream_is_metered(env):
    import anthropic
    client = anthropic.Anthropic(base_url=env.base, api_key=AGENT_KEY, max_retries=0,
                                 default_headers={"X-Request-ID": "anthropic-stream-1"})
    with client.messages.stream(model="claude-sonnet-test", max_tokens=10,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
    assert text == "one two"
    assert "stream_options" not in env.provider.last().json(), "Anthropic streams report usage themselves"
    assert audited(env, "anthropic-stream-1")["tokens"] == {"input": 17, "output": 6}


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_cache_reads_and_writes_are_input_tokens(env, stream):
    import anthropic
    client = anthropic.Anthropic(base_url=env.base, api_key=AGENT_KEY, max_retries=0,
                                 default_headers={"X-Request-ID": f"anthropic-cache-{stream}"})
    ask = dict(model="claude-sonnet-cached", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    if stream:
        with client.messages.stream(**ask) as s:
            usage = s.get_final_message().usage
    else:
        usage = client.messages.create(**ask).usage
    assert usage.cache_read_input_tokens == 100, "the client sees the provider's usage untouched"
    base = usage.input_tokens
    record = audited(env, f"anthropic-cache-{stream}")
    assert record["tokens"]["input"] == base + 100 + 50, record["tokens"]
    assert record["tokens"]["cached"] == 100


@pytest.mark.parametrize("path,model,last_event", [
    ("/v1/messages", "claude-sonnet-test", b"event: message_stop"),
    ("/v1/chat/completions", "gpt-4o-mini", b"data: [DONE]"),
])
def test_a_client_resetting_right_after_the_last_event_lost_nothing(env, path, model, last_event):
    """LiteLLM's Anthropic stream resets the connection as soon as it has read `message_stop`:
    the stream was delivered to its end, so it is `ok`, not `client_closed`."""
    import socket
    import struct
    request_id = f"reset-after-end-{model}"
    body = json.dumps({"model": model, "stream": True, "max_tokens": 10, "messages": []}).encode()
    s = socket.create_connection(("127.0.0.1", env.port))
    s.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {AGENT_KEY}\r\n"
               f"X-Request-ID: {request_id}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    seen = b""
    while last_event not in seen or not seen.endswith(b"\n\n\r\n"):
        data = s.recv(65536)
        assert data, seen
        seen += data
    assert not seen.endswith(b"0\r\n\r\n"), "the stream's end has not been written yet"
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    record = audited(env, request_id)
    assert record["code"] == "ok", record
    assert record["tokens_source"] == "reported"
