"""EdDSA JWTs from trusted issuers: minted by PyJWT and by `warden token mint`, checked by the
real binary (signature, audience, issuer, time, revocation, model narrowing)."""

import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from conftest import PROVIDER_ENV
from harness import Warden, audit_record, run_warden_cli
from mock_provider import MockProvider

CHAT = "/v1/chat/completions"


def keygen(path):
    out = run_warden_cli("keygen", "--out", str(path))
    assert out.returncode == 0, out.stderr
    return load_pem_private_key(path.read_bytes(), None), path.with_name(path.name + ".pub").read_text().strip()


def policy(upstream, public, log, spool, revoked_tokens=()):
    return f"""version: 1
issuers:
  corp-idp: {{ed25519: "{public}", audience: warden, clock_skew_secs: 5}}
providers:
  openai:
    base_url: {upstream}
    models: ["gpt-*"]
    api_key_env: TEST_OPENAI_KEY
agents:
  bot:
    models: ["gpt-4o-mini", "gpt-4o"]
  narrow:
    models: ["gpt-4o-mini"]
revocations:
  tokens: {json.dumps(list(revoked_tokens))}
audit:
  sink: {{file: {{path: {log}}}}}
  spool_dir: {spool}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tokens")
    provider = MockProvider()
    key, public = keygen(tmp / "issuer.key")
    log = tmp / "audit.jsonl"
    w = Warden(policy(provider.base_url, public, log, tmp / "spool", ["revoked-1"]), env=PROVIDER_ENV)
    w.key, w.key_path, w.public, w.audit_log, w.provider, w.tmp = key, tmp / "issuer.key", public, log, provider, tmp
    yield w
    w.stop()
    provider.close()


def claims(**over):
    now = int(time.time())
    base = {"sub": "bot", "aud": "warden", "iss": "corp-idp", "iat": now, "exp": now + 300, "jti": f"t-{time.time_ns()}"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def pyjwt(env, key=None, **over):
    return jwt.encode(claims(**over), key or env.key, algorithm="EdDSA")


def call(env, token, model="gpt-4o-mini"):
    return httpx.post(env.base + CHAT, json={"model": model, "messages": []}, timeout=10,
                      headers={"Authorization": f"Bearer {token}"})


def refused(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["x-warden-error"] == code and r.json()["error"]["code"] == code


def audited(env, request_id):
    return audit_record(env.audit_log, request_id)


def test_a_pyjwt_token_is_accepted_and_audited(env):
    token = pyjwt(env, jti="audit-me")
    r = call(env, token)
    assert r.status_code == 200, r.text
    seen = env.provider.last()
    assert seen.header("authorization") != f"Bearer {token}", "the token never reaches the provider"
    assert seen.header("x-agent-id") == "bot"
    record = audited(env, r.headers["x-request-id"])
    assert record["agent"] == "bot"
    assert record["credential"] == {"kind": "jwt", "key_id": "corp-idp", "token_id": "audit-me"}


def test_warden_token_mint_verifies_in_pyjwt_and_in_warden(env):
    out = run_warden_cli("token", "mint", "--issuer-key", str(env.key_path), "--agent", "bot",
                         "--audience", "warden", "--ttl", "5m", "--models", "gpt-4o-mini,gpt-4o", "--jti", "minted-1")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    decoded = jwt.decode(token, env.key.public_key(), algorithms=["EdDSA"], audience="warden")
    assert decoded["sub"] == "bot" and decoded["jti"] == "minted-1"
    assert decoded["models"] == ["gpt-4o-mini", "gpt-4o"]
    assert 295 <= decoded["exp"] - decoded["iat"] <= 300
    # No `iss` given: Warden finds the issuer whose key verifies it.
    assert "iss" not in decoded
    assert call(env, token).status_code == 200
    bad = run_warden_cli("token", "mint", "--issuer-key", str(env.key_path), "--agent", "bot",
                         "--audience", "warden", "--ttl", "soon")
    assert bad.returncode == 2 and "--ttl" in bad.stderr


def test_expired_and_not_yet_valid_tokens(env):
    now = int(time.time())
    refused(call(env, pyjwt(env, iat=now - 600, exp=now - 60)), 401, "expired_credentials")
    assert call(env, pyjwt(env, exp=now + 2)).status_code == 200, "within exp"
    refused(call(env, pyjwt(env, nbf=now + 120)), 401, "invalid_credentials")
    refused(call(env, pyjwt(env, exp=None)), 401, "invalid_credentials")


def test_audience_issuer_subject_and_signature_are_checked(env, tmp_path):
    refused(call(env, pyjwt(env, aud="someone-else")), 401, "invalid_credentials")
    refused(call(env, pyjwt(env, iss="evil-idp")), 401, "invalid_credentials")
    refused(call(env, pyjwt(env, sub="nobody")), 401, "invalid_credentials")
    other, _ = keygen(tmp_path / "other.key")
    refused(call(env, pyjwt(env, key=other)), 401, "invalid_signature")
    header, payload, signature = pyjwt(env).split(".")
    forged_payload = jwt.utils.base64url_encode(json.dumps(claims(sub="narrow")).encode()).decode()
    refused(call(env, f"{header}.{forged_payload}.{signature}"), 401, "invalid_signature")
    hs256 = jwt.encode(claims(), "a-shared-secret-of-sufficient-length!", algorithm="HS256")
    refused(call(env, hs256), 401, "invalid_credentials")


def test_a_revoked_jti_is_refused_even_from_the_cache(env):
    refused(call(env, pyjwt(env, jti="revoked-1")), 403, "credential_revoked")
    token = pyjwt(env, jti="revoke-me-later")
    assert call(env, token).status_code == 200
    text = policy(env.provider.base_url, env.public, env.audit_log, env.tmp / "spool", ["revoked-1", "revoke-me-later"])
    env.update({"warden.yaml": text})
    deadline = time.time() + 5
    while call(env, token).status_code == 200:
        assert time.time() < deadline, "revocation not applied"
        time.sleep(0.05)
    refused(call(env, token), 403, "credential_revoked")


def test_the_models_claim_narrows_and_never_widens(env):
    only_mini = pyjwt(env, models=["gpt-4o-mini"])
    assert call(env, only_mini, "gpt-4o-mini").status_code == 200
    refused(call(env, only_mini, "gpt-4o"), 403, "model_not_allowed")
    listed = httpx.get(env.base + "/v1/models", headers={"Authorization": f"Bearer {only_mini}"}, timeout=10)
    assert [m["id"] for m in listed.json()["data"]] == ["gpt-4o-mini"]
    widening = pyjwt(env, sub="narrow", models=["*"])
    assert call(env, widening, "gpt-4o-mini").status_code == 200
    refused(call(env, widening, "gpt-4o"), 403, "model_not_allowed")


def test_check_reports_bad_issuer_and_public_keys(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("""version: 1
issuers:
  idp: {ed25519: "not base64!", audience: warden}
  short: {ed25519: "AAAA", audience: warden}
providers:
  m: {kind: mock, models: ["m-*"]}
agents:
  a:
    models: ["m-1"]
    public_keys: [{id: a-1, ed25519: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}, {id: a-2, ed25519: "%%%"}]
""")
    out = run_warden_cli("check", str(path))
    assert out.returncode == 1
    assert "p.yaml:3:18: error: `ed25519` must be base64" in out.stdout, out.stdout
    assert "p.yaml:4:20: error: `ed25519` must be 32 bytes, got 3" in out.stdout, out.stdout
    assert "p.yaml:10:" in out.stdout and out.stdout.count("error") == 3, out.stdout
