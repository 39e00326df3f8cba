"""Token budgets (reserve before forwarding, settle to the reported usage) with the real binary:
concurrent requests cannot all pass before any is charged; settling releases the difference."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import PROVIDER_ENV
from harness import Warden, sha256_hex
from mock_provider import MockProvider

KEY = "sk-budgeted"


@pytest.fixture(scope="module")
def env():
    provider = MockProvider(slow_seconds=1.0)
    w = Warden(f"""version: 1
providers:
  openai:
    base_url: {provider.base_url}
    models: ["gpt-*", "slow-*"]
    api_key_env: TEST_OPENAI_KEY
agents:
  budgeted:
    keys: [{{id: b-1, sha256: {sha256_hex(KEY)}}}]
    models: ["gpt-4o-mini", "slow-model"]
    limits: {{tokens_per_minute: 1000}}
""", env=PROVIDER_ENV)
    w.provider = provider
    yield w
    w.stop()
    provider.close()


def call(env, model="gpt-4o-mini", max_tokens=200):
    return httpx.post(env.base + "/v1/chat/completions", timeout=10, headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": model, "max_tokens": max_tokens, "messages": []})


def test_concurrent_requests_cannot_all_pass_before_any_is_charged(env):
    # Each reserves 200 + its prompt (~17) ≈ 217 tokens: 4 fit in 1000, the rest are refused
    # while the first four are still running (the slow model answers after 1 s).
    while time.time() % 60 > 55:  # stay clear of a minute boundary (a new window)
        time.sleep(0.2)
    barrier = threading.Barrier(12)

    def one(_):
        barrier.wait()
        return call(env, "slow-model")
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(one, range(12)))
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) == 4 and len(refused) == 8, [r.status_code for r in responses]
    for r in refused:
        assert r.headers["x-warden-error"] == "token_budget_exhausted"
        assert 1 <= int(r.headers["retry-after"]) <= 60
    lines = [l for l in env.metrics().splitlines() if l.startswith("warden_budget_rejections_total{")]
    assert any('agent="budgeted"' in l and l.endswith(" 8") for l in lines), lines


def test_settling_releases_what_was_not_used(env):
    # The four above settled to the 18 tokens the mock reports each (72 in all): a request
    # reserving ~917 now fits, though 4 x 217 were reserved a moment ago.
    time.sleep(0.2)
    r = call(env, max_tokens=900)
    assert r.status_code == 200, f"settling did not release the reservations: {r.text}"
    # That one settled to 18 as well; 990 + its prompt no longer fits (in this minute or a new one).
    refused = call(env, max_tokens=990)
    assert refused.status_code == 429 and refused.headers["x-warden-error"] == "token_budget_exhausted"


def test_usage_endpoint_reports_use_limits_and_resets(env):
    before = httpx.get(env.admin + "/v1/agents/budgeted/usage", timeout=5).json()
    assert call(env, max_tokens=10).status_code == 200
    deadline = time.time() + 5
    while True:
        usage = httpx.get(env.admin + "/v1/agents/budgeted/usage", timeout=5).json()
        if usage["requests"]["total"] == before["requests"]["total"] + 1:
            break
        assert time.time() < deadline, usage
        time.sleep(0.05)
    assert usage["agent"] == "budgeted"
    assert usage["tokens"]["input"] == before["tokens"]["input"] + 13
    assert usage["tokens"]["output"] == before["tokens"]["output"] + 5
    minute = usage["tokens"]["minute"]
    assert minute["limit"] == 1000 and minute["used"] + minute["remaining"] == 1000
    assert minute["used"] >= 18 and 1 <= minute["reset_secs"] <= 60
    assert usage["tokens"]["day"] is None and usage["spend"] == {"usd": None, "limit": None}
    assert httpx.get(env.admin + "/v1/agents/nobody/usage", timeout=5).status_code == 404
