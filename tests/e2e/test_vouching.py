"""Warden vouches for agents downstream (`X-Agent-Identity`, checked with PyJWT against the admin
port's JWKS) and publishes agents' public identity."""


import httpx
import jwt
import pytest

from conftest import AGENT_KEY, OTHER_KEY, PROVIDER_ENV
from harness import post as harness_post, Warden, run_warden_cli, sha256_hex
from mock_provider import MockProvider


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vouching")
    assert run_warden_cli("keygen", "--out", str(tmp / "identity.key")).returncode == 0
    assert run_warden_cli("keygen", "--out", str(tmp / "agent.key")).returncode == 0
    agent_public = (tmp / "agent.key.pub").read_text().strip()
    provider = MockProvider()
    w = Warden(f"""version: 1
providers:
  openai:
    base_url: {provider.base_url}
    models: ["gpt-*"]
    api_key_env: TEST_OPENAI_KEY
    identity_header: true
  anthropic:
    base_url: {provider.base_url}
    models: ["claude-*"]
    api_key_env: TEST_ANTHROPIC_KEY
    auth: x-api-key
agents:
  bot:
    owner: team-support
    keys: [{{id: bot-1, sha256: {sha256_hex(AGENT_KEY)}}}]
    public_keys: [{{id: bot-sig-1, ed25519: "{agent_public}"}}]
    models: ["gpt-4o-mini", "claude-x"]
  other:
    keys: [{{id: other-1, sha256: {sha256_hex(OTHER_KEY)}}}]
    models: ["gpt-4o-mini"]
    status: suspended
""", env={**PROVIDER_ENV, "HOSTNAME": "pod-test"},
               server_extra=f"  identity_key_file: {tmp / 'identity.key'}\n")
    w.provider, w.agent_public = provider, agent_public
    yield w
    w.stop()
    provider.close()


def post(env, model, **headers):
    return harness_post(env, AGENT_KEY, {"model": model}, headers=headers)


def test_the_provider_gets_a_verifiable_identity_token(env):
    assert post(env, "gpt-4o-mini", **{"X-Agent-Identity": "forged"}).status_code == 200
    token = env.provider.last().header("x-agent-identity")
    assert token and token != "forged"
    jwks = httpx.get(env.admin + "/.well-known/jwks.json", timeout=5).json()
    [jwk] = jwks["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
    assert jwt.get_unverified_header(token)["kid"] == jwk["kid"]
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(token, key, algorithms=["EdDSA"], audience="openai")
    assert claims["sub"] == "bot" and claims["owner"] == "team-support"
    assert claims["iss"] == "warden/pod-test"
    assert 50 <= claims["exp"] - claims["iat"] <= 60
    # Reused while fresh: the next request carries the same token.
    assert post(env, "gpt-4o-mini").status_code == 200
    assert env.provider.last().header("x-agent-identity") == token


def test_providers_that_did_not_opt_in_get_no_token(env):
    assert post(env, "claude-x", **{"X-Agent-Identity": "forged"}).status_code == 200
    assert env.provider.last().header("x-agent-identity") is None


def test_public_identity_lookup(env):
    r = httpx.get(env.admin + "/v1/agents/bot", timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body == {"id": "bot", "owner": "team-support", "status": "active", "algorithm": "ed25519",
                    "public_keys": [{"id": "bot-sig-1", "ed25519": env.agent_public, "algorithm": "ed25519", "revoked": False}]}
    text = r.text
    assert sha256_hex(AGENT_KEY) not in text and "bot-1" not in text, "no API key hash or id"
    assert httpx.get(env.admin + "/v1/agents/other", timeout=5).json()["status"] == "suspended"
    assert httpx.get(env.admin + "/v1/agents/nobody", timeout=5).status_code == 404


def test_identity_header_needs_an_identity_key(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("""version: 1
providers:
  p: {base_url: "https://api.example/v1", models: ["x"], auth: none, identity_header: true}
agents:
  a: {models: ["x"]}
""")
    out = run_warden_cli("check", str(path))
    assert out.returncode == 1
    assert "p.yaml:3:" in out.stdout and "identity_key_file" in out.stdout, out.stdout
