"""Who acts for whom: token exchange (RFC 8693) at /v1/token, delegated tokens that never widen
and die with their parent (checked with PyJWT against the admin JWKS), team revocation, and
per-end-user limits, through the real binary with the built-in mock provider and MCP server."""

import socket

import httpx
import jwt
import pytest

from harness import Warden, audit_record, eventually, run_warden_cli, sha256_hex

PLANNER_KEY = "sk-planner-key"
LEGACY_KEY = "sk-legacy-team-key"
SHOP_KEY = "sk-shop-assistant-key"
COUNTED_KEY = "sk-counted-parent-key"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def policy(tmp, revocations=""):
    return f"""version: 1
providers:
  local: {{kind: mock, models: ["mock-*"]}}
mcp_servers:
  crm: {{kind: mock}}
services:
  payments: {{base_url: "http://127.0.0.1:9/api", auth: none}}
delegation: {{max_depth: 3, max_ttl: 10m}}
agents:
  planner:
    owner: team-research
    keys: [{{id: planner-1, sha256: {sha256_hex(PLANNER_KEY)}}}]
    models: ["mock-*"]
    limits: {{requests_per_minute: 40}}
    destinations: ["127.0.0.1:*"]
    services:
      payments: {{methods: [GET], paths: ["*"]}}
    mcp:
      crm: {{tools: {{lookup_customer: {{}}, send_email: {{}}}}}}
  legacy-bot:
    owner: team-legacy
    keys: [{{id: legacy-1, sha256: {sha256_hex(LEGACY_KEY)}}}]
    models: ["mock-*"]
  counted:
    keys: [{{id: counted-1, sha256: {sha256_hex(COUNTED_KEY)}}}]
    models: ["mock-*"]
    limits: {{requests_per_minute: 5}}
  shop-assistant:
    keys: [{{id: shop-1, sha256: {sha256_hex(SHOP_KEY)}}}]
    models: ["mock-*"]
    limits:
      per_user: {{requests_per_minute: 3, tokens_per_day: 200}}
audit:
  sink: {{file: {{path: {tmp}/audit.jsonl}}}}
  spool_dir: {tmp}/spool
{revocations}"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("delegation")
    assert run_warden_cli("keygen", "--out", str(tmp / "identity.key")).returncode == 0
    w = Warden(policy(tmp), server_extra=f"  identity_key_file: {tmp / 'identity.key'}\n")
    w.tmp, w.audit_log = tmp, tmp / "audit.jsonl"
    yield w
    w.stop()


def exchange(env, subject, actor="researcher", subject_type=ACCESS, **extra):
    form = {"grant_type": GRANT, "subject_token": subject, "subject_token_type": subject_type, "actor": actor, **extra}
    return httpx.post(env.base + "/v1/token", data=form, timeout=10)


def token(env, subject, **kw):
    r = exchange(env, subject, **kw)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def claims(env, token):
    jwks = httpx.get(env.admin + "/.well-known/jwks.json", timeout=5).json()
    header = jwt.get_unverified_header(token)
    [jwk] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    return jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["EdDSA"], audience="warden")


def chat(env, credential, model="mock-gpt", **body):
    return httpx.post(env.base + "/v1/chat/completions", timeout=10,
                      headers={"Authorization": f"Bearer {credential}", **body.pop("headers", {})},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}], **body})


def answers(env, credential, status, code=None):
    """A check for `eventually`: a chat with `credential` is answered `status` (with `code`)."""
    def check():
        r = chat(env, credential)
        assert r.status_code == status, r.text
        if code:
            assert r.json()["error"]["code"] == code, r.text
    return check


def test_an_exchange_answers_per_rfc_8693_with_a_verifiable_token(env):
    r = exchange(env, PLANNER_KEY, scope="models:mock-gpt mcp:crm/lookup_customer", ttl="300")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    answer = r.json()
    assert answer["issued_token_type"] == JWT_TYPE and answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 300
    assert jwt.get_unverified_header(answer["access_token"])["typ"] == "at+jwt"
    c = claims(env, answer["access_token"])
    assert (c["sub"], c["act"], c["iss"]) == ("planner", {"sub": "researcher"}, "warden")
    assert c["scope"] == "models:mock-gpt mcp:crm/lookup_customer" and c["exp"] - c["iat"] == 300 and c["jti"]


def test_a_delegated_token_can_do_only_what_its_scope_says(env):
    delegated = token(env, PLANNER_KEY, scope="models:mock-gpt mcp:crm/lookup_customer")
    assert chat(env, delegated).status_code == 200
    refused = chat(env, delegated, model="mock-claude")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    service = httpx.get(env.base + "/svc/payments/v1/x", headers={"Authorization": f"Bearer {delegated}"}, timeout=10)
    assert service.status_code == 403 and "delegated scope" in service.json()["error"]["message"]
    mcp = lambda body: httpx.post(env.base + "/mcp/crm", json=body, timeout=10,
                                  headers={"Authorization": f"Bearer {delegated}"}).json()
    listed = mcp({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert [t["name"] for t in listed["result"]["tools"]] == ["lookup_customer"]
    sent = mcp({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "send_email", "arguments": {}}})
    assert sent["error"]["data"]["warden_error"] == "tool_not_allowed"
    verify = httpx.post(env.base + "/v1/verify", json={"action": "x"}, timeout=10, headers={"Authorization": f"Bearer {delegated}"})
    assert verify.status_code == 403


@pytest.mark.parametrize("extra, why", [
    ({"scope": "models:*"}, "model `*`"),
    ({"scope": "services:mailgun"}, "service `mailgun`"),
    ({"scope": "mcp:crm/delete_customer"}, "MCP tool `crm/delete_customer`"),
    ({"ttl": "601"}, "max_ttl"),
])
def test_anything_wider_than_the_parent_is_refused(env, extra, why):
    r = exchange(env, PLANNER_KEY, **extra)
    assert r.status_code == 403, r.text
    assert r.headers["x-warden-error"] == "delegation_invalid"
    assert r.json()["error"] == "delegation_invalid" and why in r.json()["error_description"]


def test_a_chain_narrows_at_each_step_and_stops_at_max_depth(env):
    first = token(env, PLANNER_KEY, actor="planner-crew", scope="models:mock-* mcp:crm/lookup_customer", ttl="500")
    second = token(env, first, actor="researcher", subject_type=JWT_TYPE, scope="models:mock-gpt")
    wider = exchange(env, second, actor="x", subject_type=JWT_TYPE, scope="models:mock-*")
    assert wider.status_code == 403
    later = exchange(env, second, actor="x", subject_type=JWT_TYPE, ttl="550")
    assert later.status_code == 403 and "after its parent" in later.json()["error_description"]
    third = token(env, second, actor="summarizer", subject_type=JWT_TYPE)
    c = claims(env, third)
    assert c["act"] == {"sub": "summarizer", "act": {"sub": "researcher", "act": {"sub": "planner-crew"}}}
    assert c["sub"] == "planner" and c["scope"] == "models:mock-gpt"
    assert c["exp"] <= claims(env, first)["exp"]
    assert chat(env, third).status_code == 200
    deeper = exchange(env, third, actor="fourth", subject_type=JWT_TYPE)
    assert deeper.status_code == 403 and "max_depth" in deeper.json()["error_description"]
    record = audit_record(env.audit_log, chat(env, third).headers["x-request-id"])
    assert record["agent"] == "planner"
    assert record["credential"]["actors"] == ["planner-crew", "researcher", "summarizer"]


def test_delegated_requests_count_against_the_parents_limits(env):
    delegated = token(env, COUNTED_KEY, scope="models:mock-gpt")  # the exchange is one request
    statuses = [chat(env, delegated).status_code for _ in range(5)]
    assert statuses == [200] * 4 + [429], "the parent's requests_per_minute (5) is shared with what it delegated"
    assert chat(env, COUNTED_KEY).status_code == 429


@pytest.mark.parametrize("form, error", [
    ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ({"grant_type": GRANT, "subject_token_type": ACCESS, "actor": "a"}, "invalid_request"),
    ({"grant_type": GRANT, "subject_token": "sk-nobody", "subject_token_type": ACCESS, "actor": "a"}, "invalid_grant"),
    ({"grant_type": GRANT, "subject_token": PLANNER_KEY, "subject_token_type": "urn:x", "actor": "a"}, "invalid_request"),
    ({"grant_type": GRANT, "subject_token": PLANNER_KEY, "subject_token_type": ACCESS, "actor": "a", "scope": "tools:x"}, "invalid_scope"),
    ({"grant_type": GRANT, "subject_token": PLANNER_KEY, "subject_token_type": ACCESS}, "invalid_request"),
])
def test_bad_exchanges_get_rfc_6749_errors(env, form, error):
    r = httpx.post(env.base + "/v1/token", data=form, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == error, r.text
    assert r.json()["error_description"]
    assert r.headers["x-warden-error"] == "invalid_token_request"


def test_a_repeated_parameter_is_refused(env):
    body = f"grant_type={GRANT}&subject_token={PLANNER_KEY}&subject_token_type={ACCESS}&actor=a&actor=b"
    r = httpx.post(env.base + "/v1/token", content=body, timeout=10,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request" and "more than once" in r.text


def test_per_user_limits_hold_each_user_apart(env):
    def ask(user, **kw):
        return chat(env, SHOP_KEY, user=user, max_tokens=20, **kw)
    assert [ask("alice").status_code for _ in range(3)] == [200] * 3
    refused = ask("alice")
    assert refused.status_code == 429 and refused.headers["x-warden-error"] == "user_rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert ask("bob").status_code == 200, "another user is not limited by alice"
    by_header = chat(env, SHOP_KEY, max_tokens=20, headers={"X-Warden-User": "carol"})
    assert by_header.status_code == 200
    assert audit_record(env.audit_log, by_header.headers["x-request-id"])["user"] == "carol"
    def claude(user):
        # 120 words: the mock bills ~160 tokens, so a second call does not fit 200 a day.
        return httpx.post(env.base + "/v1/messages", timeout=10, headers={"x-api-key": SHOP_KEY, "anthropic-version": "2023-06-01"},
                          json={"model": "mock-claude", "max_tokens": 20, "metadata": {"user_id": user},
                                "messages": [{"role": "user", "content": "word " * 120}]})
    assert claude("dave").status_code == 200
    budget = claude("dave")
    assert budget.status_code == 429 and budget.headers["x-warden-error"] == "user_budget_exhausted", budget.text
    assert "per_user.tokens_per_day" in budget.json()["error"]["message"]
    assert claude("frank").status_code == 200, "a fresh user's budget is whole"
    assert budget.json()["error"]["type"] == "rate_limit_error"


def test_revoking_anything_up_the_chain_refuses_every_descendant(env):
    root = token(env, PLANNER_KEY, actor="crew", scope="models:mock-gpt")
    child = token(env, root, actor="worker", subject_type=JWT_TYPE)
    sibling = token(env, PLANNER_KEY, actor="other-crew", scope="models:mock-gpt")
    root_jti = claims(env, root)["jti"]
    env.update({"warden.yaml": policy(env.tmp, f"revocations:\n  tokens: [{root_jti}]\n")})
    eventually(answers(env, child, 403, "credential_revoked"), timeout=10)
    assert chat(env, root).status_code == 403
    assert chat(env, sibling).status_code == 200, "a token off the revoked branch still works"
    env.update({"warden.yaml": policy(env.tmp, "revocations:\n  keys: [planner-1]\n")})
    eventually(answers(env, sibling, 403, "credential_revoked"), timeout=10)
    env.update({"warden.yaml": policy(env.tmp, "revocations:\n  agents: [planner]\n")})
    eventually(answers(env, sibling, 403, "credential_revoked"), timeout=10)
    assert chat(env, PLANNER_KEY).json()["error"]["code"] == "agent_revoked"
    env.update({"warden.yaml": policy(env.tmp)})
    eventually(answers(env, sibling, 200), timeout=10)


def test_a_revoked_team_refuses_every_agent_of_it(env):
    assert chat(env, LEGACY_KEY).status_code == 200
    legacy_delegated = token(env, LEGACY_KEY)
    env.update({"warden.yaml": policy(env.tmp, "revocations:\n  teams: [{id: team-legacy, reason: sunset}]\n")})
    eventually(answers(env, LEGACY_KEY, 403, "principal_revoked"), timeout=10)
    assert chat(env, legacy_delegated).json()["error"]["code"] == "principal_revoked"
    assert exchange(env, LEGACY_KEY).json()["error"] == "invalid_grant"
    record = audit_record(env.audit_log, chat(env, LEGACY_KEY).headers["x-request-id"])
    assert record["code"] == "principal_revoked" and record["revocation"]["reason"] == "sunset"
    assert chat(env, SHOP_KEY, user="erin", max_tokens=20).status_code == 200, "other teams are not affected"
    env.update({"warden.yaml": policy(env.tmp)})
    eventually(answers(env, LEGACY_KEY, 200), timeout=10)


def test_check_reports_bad_delegation_and_per_user_sections(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""version: 1
delegation: {max_depth: 0, max_ttl: forever}
issuers:
  warden: {ed25519: "AAAA", audience: x}
teams:
  t: {limits: {per_user: {requests_per_minute: 1}}}
agents:
  a:
    limits: {per_user: {requests_per_minute: 0, tokens_per_day: 0}}
""")
    out = run_warden_cli("check", str(bad))
    assert out.returncode == 1
    text = out.stdout + out.stderr
    for expected in ["bad.yaml:2:25: error: `max_depth` is between 1 and 16",
                     "bad.yaml:2:37: error: `max_ttl` is a positive duration",
                     "bad.yaml:4:3: error: `warden` is the issuer name",
                     "per_user are per agent",
                     "bad.yaml:9:46: error: `requests_per_minute` must be at least 1",
                     "`tokens_per_day` must be at least 1"]:
        assert expected in text, (expected, text)


def connect(env, credential):
    """The status line of a CONNECT to the admin port with `credential` (HTTPS_PROXY mode)."""
    with socket.create_connection(("127.0.0.1", env.port), timeout=10) as s:
        target = f"127.0.0.1:{env.admin_port}"
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Bearer {credential}\r\n\r\n".encode())
        return s.recv(4096).split(b"\r\n", 1)[0].decode()


def test_a_delegated_token_opens_no_plain_tunnel(env):
    assert " 200 " in connect(env, PLANNER_KEY) + " "
    assert " 403 " in connect(env, token(env, PLANNER_KEY)) + " "
