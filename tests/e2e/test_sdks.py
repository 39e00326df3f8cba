"""The real OpenAI and Anthropic Python SDKs against Warden."""

import anthropic
import openai
import pytest

from conftest import AGENT_KEY, OTHER_KEY


def test_openai_sdk_chat(warden, provider):
    client = openai.OpenAI(base_url=warden.base + "/v1", api_key=AGENT_KEY, max_retries=0)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "hello from mock"
    assert r.usage.total_tokens == 18
    assert provider.last().header("x-agent-id") == "app"


def test_openai_sdk_streaming(warden):
    client = openai.OpenAI(base_url=warden.base + "/v1", api_key=AGENT_KEY, max_retries=0)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "one two three"
    assert usage.prompt_tokens == 21


def test_openai_sdk_permission_denied_carries_code(warden):
    client = openai.OpenAI(base_url=warden.base + "/v1", api_key=OTHER_KEY, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 403
    assert err.value.code == "model_not_allowed"
    assert err.value.response.headers["x-warden-error"] == "model_not_allowed"


def test_openai_sdk_authentication_error(warden):
    client = openai.OpenAI(base_url=warden.base + "/v1", api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        client.models.list()
    assert err.value.code == "invalid_credentials"


def test_openai_sdk_models_and_embeddings(warden):
    client = openai.OpenAI(base_url=warden.base + "/v1", api_key=AGENT_KEY, max_retries=0)
    assert "gpt-4o-mini" in [m.id for m in client.models.list()]
    e = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert e.data[0].embedding == [0.1, 0.2]


def test_anthropic_sdk_messages(warden, provider):
    client = anthropic.Anthropic(base_url=warden.base, api_key=AGENT_KEY, max_retries=0)
    msg = client.messages.create(model="claude-sonnet-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "hello from mock"
    assert msg.usage.input_tokens == 11
    seen = provider.last()
    assert seen.header("anthropic-version")
    assert seen.header("x-api-key") != AGENT_KEY


def test_anthropic_sdk_streaming(warden):
    client = anthropic.Anthropic(base_url=warden.base, api_key=AGENT_KEY, max_retries=0)
    with client.messages.stream(model="claude-sonnet-test", max_tokens=10,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "one two"
    assert final.usage.output_tokens == 6


def test_anthropic_sdk_permission_denied(warden):
    # `narrow` may call only /v1/chat/completions and /v1/models.
    client = anthropic.Anthropic(base_url=warden.base, api_key=OTHER_KEY, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as err:
        client.messages.create(model="claude-sonnet-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert err.value.response.headers["x-warden-error"] == "endpoint_not_allowed"
    assert err.value.body["error"]["code"] == "endpoint_not_allowed"
