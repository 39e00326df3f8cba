"""HTTP Message Signatures (RFC 9421) made by an independent implementation from PyPI
(`http-message-signatures`), sent with `requests`, checked by the real binary."""

import datetime
import json
import time
import uuid

import pytest
import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from conftest import AGENT_KEY, PROVIDER_ENV
from harness import Warden, audit_record, run_warden_cli, sha256_hex
from mock_provider import MockProvider

CHAT = "/v1/chat/completions"


def keygen(path):
    assert run_warden_cli("keygen", "--out", str(path)).returncode == 0
    return load_pem_private_key(path.read_bytes(), None), path.with_name(path.name + ".pub").read_text().strip()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("signatures")
    key, public = keygen(tmp / "agent.key")
    other, other_public = keygen(tmp / "other.key")
    provider = MockProvider()
    log = tmp / "audit.jsonl"
    text = f"""version: 1
providers:
  openai:
    base_url: {provider.base_url}
    models: ["gpt-*"]
    api_key_env: TEST_OPENAI_KEY
agents:
  signer:
    keys: [{{id: signer-api, sha256: {sha256_hex(AGENT_KEY)}}}]
    public_keys: [{{id: signer-1, ed25519: "{public}"}}, {{id: revoked-1, ed25519: "{other_public}"}}]
    models: ["gpt-4o-mini"]
revocations:
  keys: [revoked-1]
audit:
  sink: {{file: {{path: {log}}}}}
  spool_dir: {tmp / "spool"}
"""
    w = Warden(text, env=PROVIDER_ENV)
    w.key, w.other, w.provider, w.audit_log, w.text = key, other, provider, log, text
    yield w
    w.stop()
    provider.close()


def signed(env, key_id="signer-1", key=None, body=None, covered=("@method", "@authority", "@target-uri"),
           created=None, nonce="fresh", headers=None, digest=True):
    body = json.dumps(body or {"model": "gpt-4o-mini", "messages": []}).encode()
    request = requests.Request("POST", env.base + CHAT, data=body,
                               headers={"Content-Type": "application/json", **(headers or {})}).prepare()
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519,
                               key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: key or env.key}))
    signer.sign(request, key_id=key_id, covered_component_ids=covered, label="sig1",
                created=created or datetime.datetime.now(datetime.timezone.utc),
                nonce=uuid.uuid4().hex if nonce == "fresh" else nonce,
                body=body if digest else None)
    return request


def send(request):
    return requests.Session().send(request, timeout=10)


def refused(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["x-warden-error"] == code and r.json()["error"]["code"] == code


def test_a_signed_request_is_accepted_and_audited(env):
    request = signed(env)
    assert "content-digest" in request.headers["Signature-Input"]
    r = send(request)
    assert r.status_code == 200, r.text
    seen = env.provider.last()
    assert seen.header("signature") is None and seen.header("signature-input") is None
    assert seen.header("x-agent-id") == "signer"
    record = audit_record(env.audit_log, r.headers["x-request-id"])
    assert record["credential"] == {"kind": "http_signature", "key_id": "signer-1"}


def test_a_replayed_request_is_refused_even_after_a_reload(env):
    request = signed(env)
    assert send(request).status_code == 200
    refused(send(request), 401, "replayed_request")
    before = env.metric("warden_config_reloads_total", 'result="ok"')
    env.update({"warden.yaml": env.text + "# a change\n"})
    deadline = time.time() + 5
    while env.metric("warden_config_reloads_total", 'result="ok"') == before:
        assert time.time() < deadline, "no reload"
        time.sleep(0.05)
    refused(send(request), 401, "replayed_request")


def test_the_body_must_match_the_signed_digest(env):
    request = signed(env)
    request.body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "changed"}]}).encode()
    request.headers["Content-Length"] = str(len(request.body))
    refused(send(request), 401, "invalid_signature")


def test_coverage_time_key_and_signature_are_checked(env):
    refused(send(signed(env, digest=False)), 401, "invalid_signature")
    refused(send(signed(env, covered=("@method", "@target-uri"))), 401, "invalid_signature")
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    refused(send(signed(env, created=old)), 401, "expired_credentials")
    refused(send(signed(env, key_id="nobody")), 401, "invalid_credentials")
    refused(send(signed(env, key=env.other)), 401, "invalid_signature")
    refused(send(signed(env, nonce=None)), 401, "invalid_signature")


def test_a_revoked_public_key_is_refused(env):
    refused(send(signed(env, key_id="revoked-1", key=env.other)), 403, "credential_revoked")


def test_a_signature_beside_a_bearer_key_is_ambiguous(env):
    refused(send(signed(env, headers={"Authorization": f"Bearer {AGENT_KEY}"})), 401, "invalid_credentials")
