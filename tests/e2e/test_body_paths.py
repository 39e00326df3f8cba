"""Both forwarding paths behave alike: bodies up to 64 KiB go upstream in one pass from
Pingora's retry buffer, larger ones through Warden's large-body path. Each test runs with a
small body and with one padded past 64 KiB."""

import json
import time

import httpx
import pytest

from conftest import AGENT_KEY, PROVIDER_KEY, dead_provider_policy, standard_policy
from harness import post as harness_post, Warden, eventually, sha256_hex
from mock_provider import MockProvider
from test_metrics import families, samples

PATHS = {"one-pass": 0, "large-body": 100_000}


def body(model, pad, **extra):
    return {"model": model, "messages": [{"role": "user", "content": "x" * pad}], **extra}


def post(warden, payload, key=AGENT_KEY, headers=None):
    return harness_post(warden, key, payload, headers=headers)


@pytest.fixture(scope="module")
def limited(provider):
    extra = f"""  limited:
    keys: [{{id: lim-1, sha256: {sha256_hex("sk-limited")}}}]
    models: ["gpt-4o", "gpt-4o-mini"]
    limits: {{requests_per_minute: 100}}
"""
    w = Warden(standard_policy(provider.base_url, extra_agents=extra),
               env={"TEST_OPENAI_KEY": PROVIDER_KEY, "TEST_ANTHROPIC_KEY": "k"},
               server_extra="  read_timeout_secs: 1\n")
    yield w
    w.stop()


@pytest.mark.parametrize("path", PATHS)
def test_headers_both_ways(limited, provider, path):
    rid = f"paths-{path}"
    r = post(limited, body("gpt-4o-mini", PATHS[path]), key="sk-limited",
             headers={"X-Request-ID": rid, "X-Agent-ID": "forged", "x-api-key": "sk-limited"})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] != rid, "Warden's own id, the client's kept beside it"
    assert r.headers["x-ratelimit-limit"] == "100"
    assert int(r.headers["x-ratelimit-remaining"]) < 100
    [seen] = [q for q in provider.requests if q.header("x-client-request-id") == rid]
    assert seen.header("authorization") == f"Bearer {PROVIDER_KEY}"
    assert seen.header("x-api-key") is None
    assert seen.header("x-agent-id") == "limited"
    assert seen.path == "/v1/chat/completions"
    assert seen.header("content-length") == str(len(seen.body))


@pytest.mark.parametrize("path", PATHS)
def test_stream_arrives_incrementally_and_is_metered(limited, path):
    def tokens():
        f = families(limited).get("warden_tokens")
        return {s.labels["direction"]: s.value for s in samples(f, "warden_tokens_total", agent="limited", model="gpt-4o")} if f else {}

    before = tokens()
    payload = body("gpt-4o", PATHS[path], stream=True, stream_options={"include_usage": True})
    arrivals = []
    with httpx.stream("POST", limited.base + "/v1/chat/completions", json=payload, timeout=20,
                      headers={"Authorization": "Bearer sk-limited"}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 7
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:-1])]
    assert min(gaps) > 0.08, gaps  # the provider sends one event every 150 ms
    def metered():
        after = tokens()
        assert (after["input"] - before.get("input", 0), after["output"] - before.get("output", 0)) == (21, 3)
    eventually(metered)


@pytest.mark.parametrize("path", PATHS)
def test_provider_errors(limited, path):
    r = post(limited, body("error-model", PATHS[path]))
    assert r.status_code == 500 and "x-warden-error" not in r.headers
    assert r.json()["error"]["message"] == "provider exploded"
    r = post(limited, body("slow-model", PATHS[path]))
    assert r.status_code == 504 and r.headers["x-warden-error"] == "upstream_timeout"
    assert r.json()["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize("path", PATHS)
def test_dead_provider(path):
    policy = dead_provider_policy()
    w = Warden(policy)
    try:
        r = post(w, body("gpt-4o-mini", PATHS[path]))
        assert r.status_code == 502 and r.headers["x-warden-error"] == "upstream_unavailable"
        assert r.json()["error"]["code"] == "upstream_unavailable"
        def timed():
            upstream = families(w)["warden_upstream_duration_seconds"]
            [count] = samples(upstream, "warden_upstream_duration_seconds_count", provider="gone")
            assert count.value == 1
        eventually(timed)
    finally:
        w.stop()


def test_large_bodies_reuse_provider_connections(limited, provider):
    ports = set()
    for i in range(5):
        rid = f"reuse-{i}"
        assert post(limited, body("gpt-4o-mini", 100_000), headers={"X-Request-ID": rid}).status_code == 200
        [seen] = [q for q in provider.requests if q.header("x-client-request-id") == rid]
        ports.add(seen.client_port)
    assert len(ports) == 1, ports


@pytest.mark.parametrize("path", PATHS)
def test_provider_closing_idle_connections(path):
    closing = MockProvider(idle_timeout=0.3)
    w = Warden(standard_policy(closing.base_url), env={"TEST_OPENAI_KEY": PROVIDER_KEY, "TEST_ANTHROPIC_KEY": "k"})
    try:
        for _ in range(3):
            r = post(w, body("gpt-4o-mini", PATHS[path]))
            assert r.status_code == 200, r.text
            time.sleep(0.5)  # the provider closes the pooled connection meanwhile
        assert len(closing.requests) == 3
    finally:
        w.stop()
        closing.close()
