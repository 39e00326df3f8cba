"""What the provider sees: the agent's credential swapped for the provider key, forged identity
headers removed, Warden's identity added; what the agent gets back: the request id."""

import subprocess

import httpx

from conftest import AGENT_KEY, ANTHROPIC_KEY, PROVIDER_KEY


def test_openai_credential_swap_and_identity(warden, provider):
    r = httpx.post(warden.base + "/v1/chat/completions?trace=1", json={"model": "gpt-4o-mini", "messages": []},
                   headers={"Authorization": f"Bearer {AGENT_KEY}", "X-Agent-ID": "forged-admin",
                            "X-Agent-Role": "root", "X-Request-ID": "client-req-42",
                            "Accept-Encoding": "gzip"}, timeout=10)
    assert r.status_code == 200
    assert r.headers["x-request-id"] != "client-req-42", "Warden's id is authoritative"
    seen = provider.last()
    assert seen.path == "/v1/chat/completions?trace=1"
    assert seen.header("authorization") == f"Bearer {PROVIDER_KEY}"
    assert seen.header("x-agent-id") == "app"
    assert seen.header("x-agent-role") is None
    assert seen.header("x-request-id") == r.headers["x-request-id"]
    assert seen.header("x-client-request-id") == "client-req-42"
    assert seen.header("accept-encoding") is None
    assert seen.header("host") == f"127.0.0.1:{provider.port}"
    assert AGENT_KEY not in str(seen.headers)


def test_anthropic_key_swap_keeps_version(warden, provider):
    r = httpx.post(warden.base + "/v1/messages", json={"model": "claude-sonnet-test", "max_tokens": 5, "messages": []},
                   headers={"x-api-key": AGENT_KEY, "anthropic-version": "2023-06-01"}, timeout=10)
    assert r.status_code == 200
    seen = provider.last()
    assert seen.header("x-api-key") == ANTHROPIC_KEY
    assert seen.header("authorization") is None
    assert seen.header("anthropic-version") == "2023-06-01"


def test_request_id_generated_when_absent_or_malformed(warden, provider):
    ids = set()
    for sent in [None, "bad id with spaces"]:
        headers = {"Authorization": f"Bearer {AGENT_KEY}"}
        if sent:
            headers["X-Request-ID"] = sent
        r = httpx.post(warden.base + "/v1/chat/completions", json={"model": "gpt-4o-mini"}, headers=headers, timeout=10)
        rid = r.headers["x-request-id"]
        assert len(rid) == 36 and rid != sent
        assert provider.last().header("x-request-id") == rid
        ids.add(rid)
    assert len(ids) == 2


def test_http_proxy_absolute_form_with_curl(warden, provider):
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-x", warden.base, "http://api.openai.com/v1/chat/completions",
         "-H", f"Proxy-Authorization: Bearer {AGENT_KEY}", "-H", "Content-Type: application/json",
         "-d", '{"model":"gpt-4o-mini","messages":[]}'],
        capture_output=True, text=True, timeout=20)
    assert '"hello from mock"' in out.stdout, out.stdout + out.stderr
    seen = provider.last()
    assert seen.path == "/v1/chat/completions"
    assert seen.header("proxy-authorization") is None
    assert seen.header("authorization") == f"Bearer {PROVIDER_KEY}"


def test_http_proxy_env_with_curl(warden, provider):
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "http://llm.internal.example/v1/chat/completions",
         "-H", f"Authorization: Bearer {AGENT_KEY}", "-d", '{"model":"gpt-4o-mini"}'],
        capture_output=True, text=True, timeout=20, env={"http_proxy": warden.base, "PATH": "/usr/bin:/bin"})
    assert '"hello from mock"' in out.stdout, out.stdout + out.stderr


def test_models_lists_only_allowed_and_served(warden):
    r = httpx.get(warden.base + "/v1/models", headers={"Authorization": f"Bearer {AGENT_KEY}"}, timeout=10)
    ids = [m["id"] for m in r.json()["data"]]
    assert ids == ["gpt-4o-mini", "gpt-4o", "slow-model", "error-model", "text-embedding-3-small"]
    one = httpx.get(warden.base + "/v1/models/gpt-4o", headers={"Authorization": f"Bearer {AGENT_KEY}"}, timeout=10)
    assert one.json()["owned_by"] == "openai"


def test_builtin_mock_provider_json_and_sse(warden):
    h = {"Authorization": f"Bearer {AGENT_KEY}"}
    r = httpx.post(warden.base + "/v1/embeddings", json={"model": "mock-embed", "input": ["a", "b"]}, headers=h, timeout=10)
    assert len(r.json()["data"]) == 2
    with httpx.stream("POST", warden.base + "/v1/messages", headers=h, timeout=10,
                      json={"model": "mock-claude", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as s:
        text = "".join(s.iter_text())
    assert "event: message_start" in text and "event: message_stop" in text
