"""Budgets that admit what fits (issue 29): prompts estimated with the model's tokenizer, so
small budgets admit what fits, `limits.default_output_tokens`; a request that can never fit a budget's whole
window is refused so that clients do not retry it (`x-should-retry: false`, 400
`request_exceeds_budget`, a message with the estimate and the limit), with the real OpenAI and
Anthropic SDKs; one that fits the window but not what is left now stays a retryable 429."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import openai
import pytest

from conftest import PROVIDER_ENV
from harness import Warden, sha256_hex
from mock_provider import MockProvider

KEY = "sk-fit-agent"
TEAMMATE_KEY = "sk-fit-teammate"


@pytest.fixture(scope="module")
def env():
    provider = MockProvider()
    w = Warden(f"""version: 1
providers:
  openai: {{base_url: {provider.base_url}, models: ["gpt-*"], api_key_env: TEST_OPENAI_KEY}}
  anthropic: {{base_url: {provider.base_url}, models: ["claude-*"], api_key_env: TEST_ANTHROPIC_KEY, auth: x-api-key}}
pricing:
  gpt-4o: {{input: 5, output: 15}}
  gpt-4o-mini: {{input: 0.15, output: 0.6}}
  claude-sonnet-4: {{input: 0.3, output: 1.5}}
teams:
  small-team: {{limits: {{tokens_per_day: 3000}}}}
agents:
  fit:
    keys: [{{id: fit-1, sha256: {sha256_hex(KEY)}}}]
    models: ["gpt-*", "claude-*"]
    limits: {{tokens_per_minute: 2000, usd_per_day: 0.01}}
  teammate:
    owner: small-team
    keys: [{{id: mate-1, sha256: {sha256_hex(TEAMMATE_KEY)}}}]
    models: ["gpt-*"]
""", env=PROVIDER_ENV)
    w.provider = provider
    yield w
    w.stop()
    provider.close()


def attempts(env, code):
    """Requests Warden answered with `code`, from its metrics."""
    total = 0
    for line in env.metrics().splitlines():
        if line.startswith("warden_requests_total{") and f'code="{code}"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_the_openai_sdk_does_not_retry_a_request_that_can_never_fit(env):
    client = openai.OpenAI(base_url=env.base + "/v1", api_key=KEY, max_retries=3)
    before, seen = attempts(env, "request_exceeds_budget"), len(env.provider.requests)
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(model="gpt-4o-mini", max_tokens=5000,
                                       messages=[{"role": "user", "content": "hi"}])
    e = excinfo.value
    assert e.response.headers["x-should-retry"] == "false"
    assert e.body["code"] == "request_exceeds_budget"
    assert "tokens_per_minute" in e.message and "(2000)" in e.message
    assert attempts(env, "request_exceeds_budget") == before + 1, "the SDK retried"
    assert len(env.provider.requests) == seen
    # What fits the window is admitted.
    assert client.chat.completions.create(model="gpt-4o-mini", max_tokens=50,
                                          messages=[{"role": "user", "content": "hi"}]).choices


def test_the_anthropic_sdk_does_not_retry_it_either(env):
    client = anthropic.Anthropic(base_url=env.base, api_key=KEY, max_retries=3)
    before = attempts(env, "request_exceeds_budget")
    with pytest.raises(anthropic.BadRequestError) as excinfo:
        client.messages.create(model="claude-sonnet-4", max_tokens=4000,
                               messages=[{"role": "user", "content": "hi"}])
    assert excinfo.value.response.headers["x-should-retry"] == "false"
    assert attempts(env, "request_exceeds_budget") == before + 1


def test_a_cost_above_the_whole_spend_budget_never_fits(env):
    r = httpx.post(env.base + "/v1/chat/completions", timeout=10, headers={"Authorization": f"Bearer {KEY}"},
                   json={"model": "gpt-4o", "max_tokens": 1500, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and r.headers["x-warden-error"] == "request_exceeds_budget"
    assert "usd_per_day" in r.json()["error"]["message"] and "$0.01" in r.json()["error"]["message"]


def test_a_teams_whole_budget_is_a_limit_too(env):
    r = httpx.post(env.base + "/v1/chat/completions", timeout=10, headers={"Authorization": f"Bearer {TEAMMATE_KEY}"},
                   json={"model": "gpt-4o-mini", "max_tokens": 3500, "messages": []})
    assert r.status_code == 400 and r.headers["x-warden-error"] == "request_exceeds_budget"
    assert "team" in r.json()["error"]["message"] and "tokens_per_day" in r.json()["error"]["message"]
    ok = httpx.post(env.base + "/v1/chat/completions", timeout=10, headers={"Authorization": f"Bearer {TEAMMATE_KEY}"},
                    json={"model": "gpt-4o-mini", "max_tokens": 100, "messages": []})
    assert ok.status_code == 200


def test_an_agent_without_models_may_still_verify_but_call_no_model(tmp_path):
    """`models` is optional (issue 29, point 6): absent, the agent has no models."""
    key = "sk-no-models"
    w = Warden(f"""version: 1
providers:
  local: {{kind: mock, models: ["mock-*"]}}
agents:
  verifier:
    keys: [{{id: v-1, sha256: {sha256_hex(key)}}}]
    actions: {{allow: [read_data]}}
""")
    try:
        auth = {"Authorization": f"Bearer {key}"}
        verdict = httpx.post(w.base + "/v1/verify", headers=auth, timeout=10, json={"action": "read_data"})
        assert verdict.status_code == 200 and verdict.json()["verified"] is True
        r = httpx.post(w.base + "/v1/chat/completions", headers=auth, timeout=10,
                       json={"model": "mock-1", "messages": []})
        assert r.status_code == 403 and r.headers["x-warden-error"] == "model_not_allowed"
        models = httpx.get(w.base + "/v1/models", headers=auth, timeout=10).json()
        assert models["data"] == []
    finally:
        w.stop()


@pytest.fixture(scope="module")
def tight():
    """Small budgets where a one-token-per-byte estimate refused what fits (issue 29, point 1)."""
    provider = MockProvider(slow_seconds=1.0)
    keys = {name: f"sk-tight-{name}" for name in ("fifty", "wide", "crowd", "short", "plain")}
    w = Warden(f"""version: 1
providers:
  openai: {{base_url: {provider.base_url}, models: ["gpt-*", "slow-*"], api_key_env: TEST_OPENAI_KEY}}
agents:
  fifty:
    keys: [{{id: fifty-1, sha256: {sha256_hex(keys["fifty"])}}}]
    models: ["gpt-*"]
    limits: {{tokens_per_minute: 50}}
  wide:
    keys: [{{id: wide-1, sha256: {sha256_hex(keys["wide"])}}}]
    models: ["gpt-*"]
    limits: {{tokens_per_minute: 20000}}
  crowd:
    keys: [{{id: crowd-1, sha256: {sha256_hex(keys["crowd"])}}}]
    models: ["slow-*"]
    limits: {{tokens_per_minute: 100}}
  short:
    keys: [{{id: short-1, sha256: {sha256_hex(keys["short"])}}}]
    models: ["gpt-*"]
    limits: {{tokens_per_minute: 100, default_output_tokens: 50}}
  plain:
    keys: [{{id: plain-1, sha256: {sha256_hex(keys["plain"])}}}]
    models: ["gpt-*"]
    limits: {{tokens_per_minute: 100}}
""", env=PROVIDER_ENV)
    w.keys = keys
    yield w
    w.stop()
    provider.close()


def chat(w, agent, body):
    return httpx.post(w.base + "/v1/chat/completions", json=body, timeout=15,
                      headers={"Authorization": f"Bearer {w.keys[agent]}"})


def test_a_small_chat_fits_a_small_budget(tight):
    body = {"model": "gpt-4o-mini", "max_tokens": 7, "messages": [{"role": "user", "content": "Say hi"}]}
    assert len(json.dumps(body)) >= 80
    r = chat(tight, "fifty", body)
    assert r.status_code == 200, r.text


def test_a_30_kb_english_prompt_fits_20000_tokens_a_minute(tight):
    text = "The committee reviewed the budget and approved the plan for next year. " * 430
    assert len(text) > 30_000
    r = chat(tight, "wide", {"model": "gpt-4o", "max_tokens": 500, "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text


def test_concurrent_small_requests_are_admitted_as_they_fit(tight):
    while time.time() % 60 > 50:  # one minute window for the whole burst
        time.sleep(0.2)
    body = {"model": "slow-model", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    barrier = threading.Barrier(32)

    def one(_):
        barrier.wait()
        return chat(tight, "crowd", body).status_code
    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(one, range(32)))
    # Each reserves ~15 tokens (prompt ~10, cap 5); the one-per-byte estimate admitted one.
    assert codes.count(200) >= 4, codes
    assert set(codes) <= {200, 429}, codes


def test_the_default_output_reservation_is_policy(tight):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert chat(tight, "short", body).status_code == 200
    refused = chat(tight, "plain", body)
    assert refused.status_code == 400 and refused.headers["x-warden-error"] == "request_exceeds_budget"
    assert "(100)" in refused.json()["error"]["message"]
