"""The ecosystem's own shapes: OpenAI's `x-ratelimit-*-requests` / `-tokens` headers for the
agent's limits, and refusals on Anthropic's API in Anthropic's error shape, so each SDK reads
Warden's answers as it reads its provider's."""

import anthropic
import openai
import pytest

from conftest import AGENT_KEY, PROVIDER_ENV, standard_policy
from harness import Warden, sha256_hex

LIMITED_KEY = "sk-limited-shapes"


@pytest.fixture(scope="module")
def warden(provider):
    agents = f"""  limited:
    keys: [{{id: limited-1, sha256: {sha256_hex(LIMITED_KEY)}}}]
    models: ["gpt-*", "slow-*", "claude-sonnet-*"]
    limits: {{requests_per_minute: 30, tokens_per_minute: 5000}}
"""
    w = Warden(standard_policy(provider.base_url, extra_agents=agents), env=PROVIDER_ENV)
    yield w
    w.stop()


def ask(max_tokens=50):
    return dict(model="gpt-4o-mini", max_tokens=max_tokens, messages=[{"role": "user", "content": "hi"}])


def test_openai_rate_limit_headers_report_the_agents_limits(warden):
    client = openai.OpenAI(base_url=warden.base + "/v1", api_key=LIMITED_KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(**ask())
    h = raw.headers
    assert h["x-ratelimit-limit-requests"] == "30", "the agent's limit replaces the provider account's"
    assert int(h["x-ratelimit-remaining-requests"]) < 30
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert h["x-ratelimit-limit-tokens"] == "5000"
    remaining = int(h["x-ratelimit-remaining-tokens"])
    assert 0 < remaining < 5000
    assert h["x-ratelimit-reset-tokens"].endswith("s")
    assert h["x-ratelimit-limit"] == "30", "the generic names stay"
    again = client.chat.completions.with_raw_response.create(**ask()).headers
    assert int(again["x-ratelimit-remaining-tokens"]) < remaining


def test_without_limits_the_providers_headers_pass_through(warden):
    client = openai.OpenAI(base_url=warden.base + "/v1", api_key=AGENT_KEY, max_retries=0)
    h = client.chat.completions.with_raw_response.create(**ask()).headers
    assert h["x-ratelimit-limit-requests"] == "10000"
    assert h["x-ratelimit-limit-tokens"] == "30000000"


def test_a_token_refusal_says_what_is_left(warden):
    import threading
    client = openai.OpenAI(base_url=warden.base + "/v1", api_key=LIMITED_KEY, max_retries=0)
    holding = threading.Thread(target=lambda: client.chat.completions.create(**dict(ask(3000), model="slow-model")))
    holding.start()
    try:
        import time
        time.sleep(0.5)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(**ask(max_tokens=3000))
    finally:
        holding.join()
    h = refused.value.response.headers
    assert h["x-warden-error"] == "token_budget_exhausted"
    assert h["x-ratelimit-limit-tokens"] == "5000"
    assert int(h["x-ratelimit-remaining-tokens"]) < 2000, "the slow request holds its reservation"
    assert h["x-ratelimit-reset-tokens"].endswith("s")


def test_anthropic_sdk_reads_a_refusal_as_anthropics_own(warden):
    client = anthropic.Anthropic(base_url=warden.base, api_key=LIMITED_KEY, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        client.messages.create(model="claude-opus-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    body = refused.value.body
    assert body["type"] == "error", body
    assert body["error"]["type"] == "permission_error"
    assert "`claude-opus-test`" in body["error"]["message"]
    assert refused.value.response.headers["x-warden-error"] == "model_not_allowed"


def test_anthropic_auth_and_size_refusals_have_anthropic_types(warden):
    import httpx
    r = httpx.post(warden.base + "/v1/messages", json={"model": "claude-sonnet-test", "max_tokens": 5, "messages": []},
                   headers={"x-api-key": "sk-wrong", "anthropic-version": "2023-06-01"}, timeout=10)
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"
    client = anthropic.Anthropic(base_url=warden.base, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.count_tokens(model="claude-sonnet-test", messages=[{"role": "user", "content": "hi"}])


def test_openai_paths_keep_openais_shape(warden):
    import httpx
    r = httpx.post(warden.base + "/v1/chat/completions", json={"model": "gpt-4o-mini"},
                   headers={"Authorization": "Bearer sk-wrong"}, timeout=10)
    assert r.status_code == 401 and "type" not in r.json()
    assert r.json()["error"]["code"] == "invalid_credentials"
