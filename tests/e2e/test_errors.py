"""Every SPEC error code the hot path produces: status, X-Warden-Error, JSON body shape."""

import http.client
import json

import httpx
import pytest

from conftest import AGENT_KEY, EXPIRED_KEY, OTHER_KEY, SUSPENDED_KEY, dead_provider_policy
from harness import post as harness_post, Warden

CHAT = "/v1/chat/completions"


def post(warden, path, body, key=AGENT_KEY, headers=None, raw=None):
    return harness_post(warden, key, body, path=path, headers=headers, raw=raw)


def assert_refused(resp, status, code):
    assert resp.status_code == status, resp.text
    assert resp.headers["x-warden-error"] == code
    err = resp.json()["error"]
    assert err["code"] == code
    assert err["message"] and err["type"]
    assert resp.headers["x-request-id"]


def test_missing_credentials(warden):
    assert_refused(post(warden, CHAT, {"model": "gpt-4o-mini"}, key=None), 401, "missing_credentials")


def test_invalid_credentials(warden):
    assert_refused(post(warden, CHAT, {"model": "gpt-4o-mini"}, key="sk-wrong"), 401, "invalid_credentials")


def test_malformed_authorization_is_missing(warden):
    r = post(warden, CHAT, {"model": "gpt-4o-mini"}, key=None, headers={"Authorization": "Basic abc"})
    assert_refused(r, 401, "missing_credentials")


def test_expired_credentials(warden):
    assert_refused(post(warden, CHAT, {"model": "gpt-4o-mini"}, key=EXPIRED_KEY), 401, "expired_credentials")


def test_agent_suspended(warden):
    assert_refused(post(warden, CHAT, {"model": "gpt-4o-mini"}, key=SUSPENDED_KEY), 403, "agent_suspended")


def test_model_not_allowed(warden, provider):
    before = len(provider.requests)
    assert_refused(post(warden, CHAT, {"model": "gpt-4o"}, key=OTHER_KEY), 403, "model_not_allowed")
    assert len(provider.requests) == before, "a refused request must never reach the provider"


def test_endpoint_not_allowed(warden):
    r = post(warden, "/v1/embeddings", {"model": "gpt-4o-mini", "input": "x"}, key=OTHER_KEY)
    assert_refused(r, 403, "endpoint_not_allowed")


@pytest.mark.parametrize("path", ["/v1/embeddings/../chat/completions", "/v1//chat/completions", "/v1/chat%2Fcompletions"])
def test_non_plain_paths_are_refused(warden, path):
    conn = http.client.HTTPConnection("127.0.0.1", warden.port, timeout=10)
    conn.request("POST", path, body=b'{"model":"gpt-4o-mini"}', headers={"Authorization": f"Bearer {OTHER_KEY}"})
    resp = conn.getresponse()
    assert resp.status == 403
    assert resp.getheader("x-warden-error") == "endpoint_not_allowed"
    conn.close()


def test_model_not_found(warden):
    assert_refused(post(warden, CHAT, {"model": "unrouted-model"}), 404, "model_not_found")


@pytest.mark.parametrize("raw", [b"{not json", b'{"model":"gpt-4o-mini","model":"gpt-4o"}', b'["gpt-4o-mini"]',
                                 b'{"model":"gpt-4o-mini"} trailing', b'{"model": 5}'])
def test_invalid_json(warden, raw):
    assert_refused(post(warden, CHAT, None, raw=raw), 400, "invalid_json")


def test_missing_model(warden):
    assert_refused(post(warden, CHAT, {"messages": []}), 400, "missing_model")


def test_body_too_large_by_content_length(warden):
    big = b'{"model":"gpt-4o-mini","pad":"' + b"x" * (9437184 + 10) + b'"}'
    assert_refused(post(warden, CHAT, None, raw=big), 413, "body_too_large")


def test_body_too_large_chunked(warden):
    def chunks():
        yield b'{"model":"gpt-4o-mini","pad":"'
        for _ in range(10):
            yield b"x" * (1024 * 1024)
        yield b'"}'
    r = httpx.post(warden.base + CHAT, content=chunks(), headers={"Authorization": f"Bearer {AGENT_KEY}"}, timeout=10)
    assert_refused(r, 413, "body_too_large")


def test_upstream_timeout(warden):
    assert_refused(post(warden, CHAT, {"model": "slow-model"}), 504, "upstream_timeout")


def test_upstream_error_status_passes_through(warden):
    r = post(warden, CHAT, {"model": "error-model"})
    assert r.status_code == 500
    assert "x-warden-error" not in r.headers
    assert r.json()["error"]["message"] == "provider exploded"


def test_upstream_unavailable_dead_provider():
    policy = dead_provider_policy()
    w = Warden(policy)
    try:
        assert_refused(post(w, CHAT, {"model": "gpt-4o-mini"}), 502, "upstream_unavailable")
    finally:
        w.stop()


def test_upstream_unavailable_missing_provider_key(provider):
    from conftest import standard_policy
    w = Warden(standard_policy(provider.base_url), env={"TEST_ANTHROPIC_KEY": "x"})
    try:
        r = post(w, CHAT, {"model": "gpt-4o-mini"})
        assert_refused(r, 502, "upstream_unavailable")
        assert "TEST_OPENAI_KEY" in r.json()["error"]["message"]
    finally:
        w.stop()


def test_refusal_after_body_keeps_connection(warden):
    with httpx.Client(base_url=warden.base, headers={"Authorization": f"Bearer {OTHER_KEY}"}) as c:
        r1 = c.post(CHAT, json={"model": "gpt-4o"})
        assert r1.status_code == 403
        r2 = c.post(CHAT, json={"model": "gpt-4o-mini"})
        assert r2.status_code == 200
        assert r1.headers.get("connection") != "close"


def message(resp):
    return resp.json()["error"]["message"]


def test_refusals_name_what_was_refused(warden):
    r = post(warden, CHAT, {"model": "gpt-4o"}, key=OTHER_KEY)
    assert "`gpt-4o`" in message(r) and "`models`" in message(r), message(r)
    r = post(warden, "/v1/embeddings", {"model": "gpt-4o-mini", "input": "x"}, key=OTHER_KEY)
    assert "POST `/v1/embeddings`" in message(r) and "`endpoints`" in message(r), message(r)
    r = post(warden, CHAT, {"model": "unrouted-model"})
    assert "`unrouted-model`" in message(r), message(r)


def test_a_hostile_name_is_cut_short_in_the_message(warden):
    r = post(warden, CHAT, {"model": "gpt-" + "x" * 100_000}, key=OTHER_KEY)
    assert r.status_code == 403
    assert len(message(r)) < 400 and "`gpt-xxx" in message(r)


def test_limit_refusals_name_the_limit(provider):
    from conftest import PROVIDER_ENV, standard_policy
    from harness import sha256_hex
    agents = f"""  rated:
    keys: [{{id: rated-1, sha256: {sha256_hex("sk-rated")}}}]
    models: ["gpt-*"]
    limits: {{requests_per_minute: 1}}
  budgeted:
    keys: [{{id: budgeted-1, sha256: {sha256_hex("sk-budgeted")}}}]
    models: ["gpt-*"]
    limits: {{tokens_per_minute: 60}}
"""
    w = Warden(standard_policy(provider.base_url, extra_agents=agents), env=PROVIDER_ENV)
    try:
        small = {"model": "gpt-4o-mini", "max_tokens": 30, "messages": [{"role": "user", "content": "hi"}]}
        assert post(w, CHAT, small, key="sk-budgeted").status_code == 200
        r = post(w, CHAT, small, key="sk-budgeted")
        assert_refused(r, 429, "token_budget_exhausted")
        assert "`tokens_per_minute` (60)" in message(r) and "the agent's" in message(r), message(r)
        assert post(w, CHAT, small, key="sk-rated").status_code == 200
        r = post(w, CHAT, small, key="sk-rated")
        assert_refused(r, 429, "rate_limited")
        assert "`requests_per_minute` (1)" in message(r), message(r)
    finally:
        w.stop()
