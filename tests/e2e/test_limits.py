"""Per-agent requests_per_minute and max_concurrent under parallel clients."""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import PROVIDER_ENV, standard_policy
from harness import Warden, sha256_hex
from mock_provider import MockProvider

RATE_KEY = "sk-rate-limited"
CONC_KEY = "sk-concurrency-limited"

EXTRA = f"""  rated:
    keys: [{{id: rated-1, sha256: {sha256_hex(RATE_KEY)}}}]
    models: ["gpt-4o-mini"]
    limits: {{requests_per_minute: 5}}
  single:
    keys: [{{id: single-1, sha256: {sha256_hex(CONC_KEY)}}}]
    models: ["slow-model", "gpt-4o-mini"]
    limits: {{max_concurrent: 2}}
"""


@pytest.fixture(scope="module")
def limited():
    provider = MockProvider(slow_seconds=1.0)
    w = Warden(standard_policy(provider.base_url, EXTRA), env=PROVIDER_ENV)
    yield w
    w.stop()
    provider.close()


def test_requests_per_minute_under_parallel_clients(limited):
    def call(_):
        return httpx.post(limited.base + "/v1/chat/completions", json={"model": "gpt-4o-mini"},
                          headers={"Authorization": f"Bearer {RATE_KEY}"}, timeout=10)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, range(12)))
    ok = [r for r in responses if r.status_code == 200]
    limited_ = [r for r in responses if r.status_code == 429]
    assert len(ok) == 5 and len(limited_) == 7
    for r in limited_:
        assert r.headers["x-warden-error"] == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 12
        assert 0 < int(r.headers["retry-after-ms"]) <= 12000
        assert r.headers["x-ratelimit-remaining"] == "0"
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in ok) == [0, 1, 2, 3, 4]
    assert all(r.headers["x-ratelimit-limit"] == "5" for r in responses)


def test_other_agents_are_not_limited_by_one_agents_bucket(limited):
    from conftest import AGENT_KEY
    r = httpx.post(limited.base + "/v1/chat/completions", json={"model": "gpt-4o-mini"},
                   headers={"Authorization": f"Bearer {AGENT_KEY}"}, timeout=10)
    assert r.status_code == 200
    assert "x-ratelimit-limit" not in r.headers


def test_max_concurrent_under_parallel_clients(limited):
    barrier = threading.Barrier(5)

    def call(_):
        barrier.wait()
        return httpx.post(limited.base + "/v1/chat/completions", json={"model": "slow-model"},
                          headers={"Authorization": f"Bearer {CONC_KEY}"}, timeout=10)
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(call, range(5)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 429, 429, 429], [r.text for r in responses]
    for r in responses:
        if r.status_code == 429:
            assert r.headers["x-warden-error"] == "concurrency_limited"
            assert r.headers["retry-after"] == "1" and r.headers["retry-after-ms"] == "1000"
    # Slots are released when requests end: the next request passes.
    r = httpx.post(limited.base + "/v1/chat/completions", json={"model": "gpt-4o-mini"},
                   headers={"Authorization": f"Bearer {CONC_KEY}"}, timeout=10)
    assert r.status_code == 200
