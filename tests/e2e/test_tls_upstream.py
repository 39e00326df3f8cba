"""Providers reached over TLS: a mock provider served with a test CA's certificate.

Warden verifies the provider's certificate and host name against the platform's roots plus a
provider's `ca_file`; a provider it cannot verify gets 502 `upstream_unavailable`, and the agent's
request never reaches it."""

import hashlib
import json
import ssl

import httpx
import pytest
import trustme

from conftest import AGENT_KEY, PROVIDER_KEY
from harness import Warden, eventually, run_warden_cli, sha256_hex
from mock_provider import MockProvider


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def tls_provider(ca, *names):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return MockProvider(tls=context, stream_interval=0.05)


@pytest.fixture(scope="module")
def provider(ca):
    p = tls_provider(ca, "127.0.0.1", "localhost")
    yield p
    p.close()


def policy(base_url, ca_file=None):
    ca_line = f"\n    ca_file: {ca_file}" if ca_file else ""
    return f"""version: 1
providers:
  secure:
    base_url: {base_url}
    models: ["gpt-*"]
    api_key_env: TEST_OPENAI_KEY{ca_line}
agents:
  app:
    keys: [{{id: app-1, sha256: {sha256_hex(AGENT_KEY)}}}]
    models: ["gpt-*"]
"""


def chat(warden, **extra):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(warden.base + "/v1/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {AGENT_KEY}"})


@pytest.fixture(scope="module")
def ca_pem(ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("ca") / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def warden(provider, ca_pem):
    w = Warden(policy(provider.base_url, ca_pem), env={"TEST_OPENAI_KEY": PROVIDER_KEY})
    yield w
    w.stop()


def test_ca_file_trusts_a_private_provider(warden, provider):
    r = chat(warden)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "hello from mock"
    seen = provider.last()
    assert seen.header("authorization") == f"Bearer {PROVIDER_KEY}"
    assert seen.header("host") == f"127.0.0.1:{provider.port}"
    def metered():
        assert warden.metric("warden_tokens_total", 'agent="app",direction="input",model="_other"') == 13
    eventually(metered)


def test_streams_arrive_over_tls(warden):
    with httpx.stream("POST", warden.base + "/v1/chat/completions", timeout=10,
                      headers={"Authorization": f"Bearer {AGENT_KEY}"},
                      json={"model": "gpt-4o-mini", "stream": True, "messages": []}) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[1][6:])["choices"][0]["delta"]["content"] == "one "


@pytest.mark.parametrize("size", [65_536, 1_000_000])
def test_bodies_on_both_paths_reach_a_tls_provider_intact(warden, provider, size):
    head = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"'
    tail = b'"}]}'
    body = head + b"b" * (size - len(head) - len(tail)) + tail
    r = httpx.post(warden.base + "/v1/chat/completions", content=body, timeout=30,
                   headers={"Authorization": f"Bearer {AGENT_KEY}", "X-Request-ID": f"tls-{size}"})
    assert r.status_code == 200, r.text
    seen = [q for q in provider.requests if q.header("x-client-request-id") == f"tls-{size}"]
    assert len(seen) == 1 and seen[0].sha256 == hashlib.sha256(body).hexdigest()


def test_platform_trust_store_follows_ssl_cert_file(provider, ca_pem):
    w = Warden(policy(provider.base_url), env={"TEST_OPENAI_KEY": PROVIDER_KEY, "SSL_CERT_FILE": str(ca_pem)})
    try:
        assert chat(w).status_code == 200
    finally:
        w.stop()


def test_an_unknown_ca_is_refused(provider):
    before = len(provider.requests)
    w = Warden(policy(provider.base_url), env={"TEST_OPENAI_KEY": PROVIDER_KEY})
    try:
        r = chat(w)
        assert r.status_code == 502, r.text
        assert r.headers["x-warden-error"] == "upstream_unavailable"
        assert r.json()["error"]["code"] == "upstream_unavailable"
        assert PROVIDER_KEY not in r.text
    finally:
        w.stop()
    assert len(provider.requests) == before


def test_a_certificate_for_another_host_is_refused(ca, ca_pem):
    other = tls_provider(ca, "llm.example.com")
    w = Warden(policy(other.base_url, ca_pem), env={"TEST_OPENAI_KEY": PROVIDER_KEY})
    try:
        r = chat(w)
        assert r.status_code == 502 and r.headers["x-warden-error"] == "upstream_unavailable"
        assert other.requests == []
    finally:
        w.stop()
        other.close()


def test_ca_file_of_another_ca_is_not_trusted(provider, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    w = Warden(policy(provider.base_url, other), env={"TEST_OPENAI_KEY": PROVIDER_KEY})
    try:
        assert chat(w).headers.get("x-warden-error") == "upstream_unavailable"
    finally:
        w.stop()


def test_bad_ca_files_are_policy_errors(tmp_path, provider):
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    for ca_file, why in [(tmp_path / "missing.pem", "No such file"), (not_pem, "no PEM certificate")]:
        path = tmp_path / "warden.yaml"
        path.write_text(policy(provider.base_url, ca_file))
        result = run_warden_cli("serve", "--config", str(path), env={"TEST_OPENAI_KEY": "k"})
        assert result.returncode == 1, result.stderr
        assert f"{path}:7:14: error: cannot use `ca_file` {ca_file}" in result.stderr, result.stderr
        assert why in result.stderr
