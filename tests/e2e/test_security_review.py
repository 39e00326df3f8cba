"""The security review's holes (issue 31), each attacked through the real binary as a hostile
agent would: hung-up clients, `n`, `stream_options: null`, tampered signed bodies and queries,
glob day counts and padded action names, request limits on every kind of request, path and
method tricks on services, tunnels that outlive revocation or stall, request ids, debug logs,
unscoped issuers and the admin port."""

import datetime
import json
import socket
import time
import uuid

import pytest
import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from conftest import AGENT_KEY, PROVIDER_ENV, sha256_hex, standard_policy
from harness import post, Warden, audit_record, eventually, run_warden_cli
from test_connect import Echo, connect
from test_services import Service

HANGER_KEY = "sk-hanger-agent-key"
MANY_KEY = "sk-many-choices-key"
ACTOR_KEY = "sk-actor-agent-key"
LIMITED_KEY = "sk-limited-agent-key"
DOCS_KEY = "sk-docs-agent-key"
TUNNEL_KEY = "sk-tunnel-agent-key"
SERVICE_KEY = "sk-live-docs-secret"


@pytest.fixture(scope="module")
def service():
    s = Service()
    yield s
    s.close()


@pytest.fixture(scope="module")
def echo():
    e = Echo()
    yield e
    e.close()


def keygen(path):
    assert run_warden_cli("keygen", "--out", str(path)).returncode == 0
    return load_pem_private_key(path.read_bytes(), None), path.with_name(path.name + ".pub").read_text().strip()


def agents(public, echo_port):
    return f"""  hanger:
    keys: [{{id: hanger-1, sha256: {sha256_hex(HANGER_KEY)}}}]
    models: ["slow-*", "gpt-*"]
    limits: {{tokens_per_day: 3000}}
  many:
    keys: [{{id: many-1, sha256: {sha256_hex(MANY_KEY)}}}]
    models: ["gpt-*"]
    limits: {{tokens_per_day: 2000}}
  actor:
    keys: [{{id: actor-1, sha256: {sha256_hex(ACTOR_KEY)}}}]
    public_keys: [{{id: actor-sig, ed25519: "{public}"}}]
    models: ["gpt-*"]
    actions:
      allow: ["transfer_*", read_data]
      deny: [transfer_to_new_payee]
      usd_per_action: 100000
      per_day: {{"transfer_*": 2}}
    services:
      docs: {{methods: [GET, POST], paths: ["/public/*", "/upload"]}}
  limited:
    keys: [{{id: limited-1, sha256: {sha256_hex(LIMITED_KEY)}}}]
    models: ["gpt-*"]
    limits: {{requests_per_minute: 2, max_concurrent: 1}}
    actions: {{allow: [read_data]}}
    services:
      docs: {{methods: [GET], paths: ["/public/*"]}}
  docs-reader:
    keys: [{{id: docs-1, sha256: {sha256_hex(DOCS_KEY)}}}]
    models: ["gpt-*"]
    services:
      docs: {{methods: [GET], paths: ["/public/*"]}}
      anything: {{methods: ["*"], paths: ["*"]}}
  tunneller:
    keys: [{{id: tunnel-1, sha256: {sha256_hex(TUNNEL_KEY)}}}]
    models: ["gpt-*"]
    destinations: ["127.0.0.1:{echo_port}"]
"""


@pytest.fixture(scope="module")
def warden(provider, service, echo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security")
    key, public = keygen(tmp / "actor.key")
    policy = standard_policy(provider.base_url, extra_agents=agents(public, echo.port)) + f"""services:
  docs: {{base_url: "http://127.0.0.1:{service.port}", api_key_env: TEST_SERVICE_KEY, auth: bearer}}
  anything: {{base_url: "http://127.0.0.1:{service.port}/any", api_key_env: TEST_SERVICE_KEY, auth: bearer}}
audit:
  sink: {{file: {{path: {tmp}/audit.jsonl}}}}
  spool_dir: {tmp}/spool
"""
    w = Warden(policy, env={**PROVIDER_ENV, "TEST_SERVICE_KEY": SERVICE_KEY, "WARDEN_LOG": "debug"})
    w.key, w.audit_log, w.text = key, tmp / "audit.jsonl", policy
    yield w
    w.stop()


def usage(warden, agent):
    with requests.get(f"{warden.admin}/v1/agents/{agent}/usage", timeout=5) as r:
        assert r.status_code == 200, r.text
        return r.json()


def day_tokens(warden, agent):
    return usage(warden, agent)["tokens"]["day"]["used"]


def test_a_client_that_hangs_up_keeps_its_charge(warden):
    """Forwarded to a provider that takes 3 s, the client gone after 0.3 s: the provider did the
    work, so the reservation (1000 + the prompt) stays charged, and the budget runs out."""
    body = json.dumps({"model": "slow-model", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]})
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", warden.port))
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {HANGER_KEY}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
        time.sleep(0.3)
        s.close()
    eventually(lambda: _assert_at_least(day_tokens(warden, "hanger"), 2000), timeout=10)
    r = post(warden, HANGER_KEY, {"model": "gpt-4o-mini", "max_tokens": 1000, "messages": []})
    assert r.status_code == 429 and r.json()["error"]["code"] == "token_budget_exhausted"


def _assert_at_least(value, floor):
    assert value >= floor, value


def test_every_choice_is_reserved(warden, provider):
    before = len(provider.requests)
    r = post(warden, MANY_KEY, {"model": "gpt-4o-mini", "n": 50, "max_tokens": 1000, "messages": []})
    assert r.status_code == 400 and r.json()["error"]["code"] == "request_exceeds_budget"
    assert "`tokens_per_day` (2000)" in r.json()["error"]["message"]
    r = post(warden, MANY_KEY, {"model": "gpt-4o-mini", "best_of": 5, "max_tokens": 500, "messages": []},
             path="/v1/completions")
    assert r.status_code == 400 and r.headers["x-should-retry"] == "false"
    assert len(provider.requests) == before
    assert post(warden, MANY_KEY, {"model": "gpt-4o-mini", "n": 1, "max_tokens": 100, "messages": []}).status_code == 200


def test_stream_options_null_reaches_the_provider_once(warden, provider):
    r = post(warden, AGENT_KEY, {"model": "gpt-4o-mini", "stream": True, "stream_options": None,
                                 "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    text = r.text
    assert "[DONE]" in text and '"choices":[]' not in text.replace(" ", "")
    seen = provider.last()
    assert seen.body.count(b'"stream_options"') == 1, seen.body
    assert seen.json()["stream_options"] == {"include_usage": True}
    record = audit_record(warden.audit_log, r.headers["x-request-id"])
    assert record["tokens_source"] == "reported" and record["tokens"]["input"] == 21


def sign(warden, method, url, body=None, covered=("@method", "@authority", "@target-uri")):
    request = requests.Request(method, url, data=body, headers={"Content-Type": "application/json"} if body else {}).prepare()
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519,
                               key_resolver=MappingKeyResolver(public_keys={}, private_keys={"actor-sig": warden.key}))
    signer.sign(request, key_id="actor-sig", covered_component_ids=covered, label="sig1",
                created=datetime.datetime.now(datetime.timezone.utc), nonce=uuid.uuid4().hex,
                body=body)
    return request


def test_a_signed_body_is_bound_on_verify_and_services(warden, service):
    honest = json.dumps({"action": "read_data", "parameters": {"amount": 1}}).encode()
    tampered = json.dumps({"action": "read_data", "parameters": {"amount": 99999}}).encode()
    request = sign(warden, "POST", warden.base + "/v1/verify", honest, covered=("@method", "@authority", "@path", "content-digest"))
    assert requests.Session().send(request, timeout=10).json()["verified"] is True
    request = sign(warden, "POST", warden.base + "/v1/verify", honest, covered=("@method", "@authority", "@path", "content-digest"))
    request.body = tampered
    request.headers["Content-Length"] = str(len(tampered))
    r = requests.Session().send(request, timeout=10)
    assert r.status_code == 401 and r.headers["x-warden-error"] == "invalid_signature", r.text

    before = len(service.requests)
    request = sign(warden, "POST", warden.base + "/svc/docs/upload", honest, covered=("@method", "@authority", "@path", "content-digest"))
    r = requests.Session().send(request, timeout=10)
    assert r.status_code == 200 and service.requests[-1]["size"] == len(honest)
    request = sign(warden, "POST", warden.base + "/svc/docs/upload", honest, covered=("@method", "@authority", "@path", "content-digest"))
    request.body = tampered
    request.headers["Content-Length"] = str(len(tampered))
    r = requests.Session().send(request, timeout=10)
    assert r.status_code == 401 and r.headers["x-warden-error"] == "invalid_signature"
    assert len(service.requests) == before + 1, "the tampered body never reached the service"


def test_a_signature_must_cover_the_query(warden, service):
    request = sign(warden, "GET", warden.base + "/svc/docs/public/report", covered=("@method", "@authority", "@path"))
    assert requests.Session().send(request, timeout=10).status_code == 200
    request = sign(warden, "GET", warden.base + "/svc/docs/public/report", covered=("@method", "@authority", "@path"))
    request.url += "?export=all"
    before = len(service.requests)
    r = requests.Session().send(request, timeout=10)
    assert r.status_code == 401 and r.headers["x-warden-error"] == "invalid_signature"
    assert "@query" in r.json()["error"]["message"]
    assert len(service.requests) == before
    request = sign(warden, "GET", warden.base + "/svc/docs/public/report?export=all")
    assert requests.Session().send(request, timeout=10).status_code == 200, "@target-uri covers it"


def verify(warden, key, body):
    return requests.post(warden.base + "/v1/verify", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_glob_day_counts_are_enforced_and_names_are_read_as_the_executor_will(warden):
    verdicts = [verify(warden, ACTOR_KEY, {"action": f"transfer_{i}"}).json() for i in range(4)]
    assert [v["verified"] for v in verdicts] == [True, True, False, False]
    assert [e["code"] for e in verdicts[2]["errors"]] == ["action_limit"]
    assert verify(warden, ACTOR_KEY, {"action": "read_data"}).json()["verified"] is True
    for padded in ["transfer_to_new_payee ", " transfer_to_new_payee", "transfer_to_new_payee\u0000", "read_data\n"]:
        r = verify(warden, ACTOR_KEY, {"action": padded})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", padded


def test_request_limits_apply_to_services_verify_and_model_lists(warden):
    headers = {"Authorization": f"Bearer {LIMITED_KEY}"}
    codes = [requests.get(warden.base + "/svc/docs/public/a", headers=headers, timeout=10).status_code for _ in range(3)]
    codes.append(verify(warden, LIMITED_KEY, {"action": "read_data"}).status_code)
    codes.append(requests.get(warden.base + "/v1/models", headers=headers, timeout=10).status_code)
    assert codes == [200, 200, 429, 429, 429], codes
    r = verify(warden, LIMITED_KEY, {"action": "read_data"})
    assert r.headers["x-warden-error"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1


def test_service_paths_cannot_escape_their_grant(warden, service):
    headers = {"Authorization": f"Bearer {DOCS_KEY}"}
    assert requests.get(warden.base + "/svc/docs/public/a", headers=headers, timeout=10).status_code == 200
    before = len(service.requests)
    for path in ["/svc/docs/public/..;/private/admin", "/svc/docs/public/x\\..\\..\\private\\admin",
                 "/svc/docs/public/a/../../private", "/svc/docs/public/a/b", "/svc/docs/public;x=1"]:
        s = socket.create_connection(("127.0.0.1", warden.port), timeout=5)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DOCS_KEY}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        s.close()
        assert answer.split(b"\r\n")[0].split(b" ")[1] in (b"400", b"403"), (path, answer[:200])
    assert len(service.requests) == before


def test_trace_and_method_overrides_never_reach_a_service(warden, service):
    headers = {"Authorization": f"Bearer {DOCS_KEY}"}
    before = len(service.requests)
    r = requests.request("TRACE", warden.base + "/svc/anything/echo", headers=headers, timeout=10)
    assert r.status_code == 403 and r.headers["x-warden-error"] == "destination_not_allowed"
    r = requests.get(warden.base + "/svc/docs/public/a?_method=DELETE", headers=headers, timeout=10)
    assert r.status_code == 403
    assert requests.get(warden.base + "/svc/docs/public/a?_method=GET", headers=headers, timeout=10).status_code == 200
    overrides = {"X-HTTP-Method-Override": "DELETE", "X-HTTP-Method": "DELETE", "X-Method-Override": "DELETE"}
    assert requests.get(warden.base + "/svc/docs/public/a", headers={**headers, **overrides}, timeout=10).status_code == 200
    seen = service.requests[-1]["headers"]
    assert not {"x-http-method-override", "x-http-method", "x-method-override"} & set(seen)
    assert len(service.requests) == before + 2


def test_a_tunnel_flushes_small_replies_and_closes_when_its_agent_is_revoked(warden, echo):
    status, _, s = connect(warden, f"127.0.0.1:{echo.port}", f"Bearer {TUNNEL_KEY}")
    assert status.endswith("200 Connection Established")
    s.settimeout(2)
    s.sendall(b"hi\n")
    assert s.recv(100) == b"echo: hi\n", "a 9-byte reply arrives at once"
    warden.update({"warden.yaml": warden.text + "revocations:\n  agents: [{id: tunneller, reason: leaked}]\n"})
    s.settimeout(5)
    started = time.time()
    try:
        while s.recv(100):
            pass
    except ConnectionResetError:
        pass
    assert time.time() - started < 3, "closed within a second or so of the revocation"
    s.close()
    warden.update({"warden.yaml": warden.text})
    record = eventually(lambda: _tunnel_record(warden), timeout=10)
    assert record["tunnel_end"] == "revoked"
    assert record["credential"] == {"kind": "api_key", "key_id": "tunnel-1"}


def _tunnel_record(warden):
    lines = [json.loads(line) for line in warden.audit_log.read_text().splitlines()]
    [record] = [r for r in lines if r.get("type") == "tunnel" and r.get("agent") == "tunneller"]
    return record


def test_wardens_request_id_is_authoritative(warden, provider):
    r = requests.post(warden.base + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []},
                      headers={"Authorization": f"Bearer {AGENT_KEY}", "X-Request-ID": "someone-elses-id"}, timeout=10)
    assert r.status_code == 200
    ours = r.headers["x-request-id"]
    assert ours != "someone-elses-id" and len(ours) == 36
    seen = provider.last()
    assert seen.header("x-request-id") == ours and seen.header("x-client-request-id") == "someone-elses-id"
    record = audit_record(warden.audit_log, ours)
    assert record["client_request_id"] == "someone-elses-id"


def test_debug_logging_never_writes_keys_or_bodies(warden):
    secret_body = "a-prompt-that-must-not-be-logged"
    post(warden, AGENT_KEY, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": secret_body}]})
    log = warden.log_text()
    assert "request_id=" in log, "the request was logged"
    assert AGENT_KEY not in log and secret_body not in log and SERVICE_KEY not in log


def test_an_issuer_mints_only_for_its_agents(provider, tmp_path):
    _, corp_public = keygen(tmp_path / "corp.key")
    _, vendor_public = keygen(tmp_path / "vendor.key")
    policy = f"""version: 1
providers:
  openai: {{base_url: {provider.base_url}, models: ["gpt-*"], api_key_env: TEST_OPENAI_KEY}}
agents:
  app: {{models: ["gpt-*"]}}
  vendor-bot: {{models: ["gpt-*"]}}
issuers:
  corp: {{ed25519: "{corp_public}", audience: warden}}
  vendor: {{ed25519: "{vendor_public}", audience: warden, agents: ["vendor-*"]}}
"""
    (tmp_path / "check.yaml").write_text(policy)
    out = run_warden_cli("check", str(tmp_path / "check.yaml"))
    assert out.returncode == 0 and "issuer `corp` may mint tokens for every agent" in out.stdout + out.stderr
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        def token(key, agent):
            out = run_warden_cli("token", "mint", "--issuer-key", str(tmp_path / key), "--agent", agent,
                                 "--audience", "warden", "--ttl", "5m")
            assert out.returncode == 0, out.stderr
            return out.stdout.strip().splitlines()[-1]

        def call(jwt):
            return requests.post(w.base + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []},
                                 headers={"Authorization": f"Bearer {jwt}"}, timeout=10)
        assert call(token("vendor.key", "vendor-bot")).status_code == 200
        r = call(token("vendor.key", "app"))
        assert r.status_code == 401 and "may not mint tokens for this agent" in r.json()["error"]["message"]
        assert call(token("corp.key", "app")).status_code == 200
    finally:
        w.stop()


def test_the_admin_agent_endpoints_need_the_admin_token(provider, tmp_path):
    (tmp_path / "admin.token").write_text("s3cret-admin-token\n")
    policy = f"""version: 1
providers:
  openai: {{base_url: {provider.base_url}, models: ["gpt-*"], api_key_env: TEST_OPENAI_KEY}}
agents:
  app: {{keys: [{{id: k, sha256: {sha256_hex(AGENT_KEY)}}}], models: ["gpt-*"]}}
"""
    w = Warden(policy, env=PROVIDER_ENV, server_extra=f"  admin_token_file: {tmp_path}/admin.token\n")
    try:
        for path in ["/v1/agents/app", "/v1/agents/app/usage"]:
            r = requests.get(w.admin + path, timeout=5)
            assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
            assert requests.get(w.admin + path, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
            ok = requests.get(w.admin + path, headers={"Authorization": "Bearer s3cret-admin-token"}, timeout=5)
            assert ok.status_code == 200 and "s3cret" not in ok.text
        for path in ["/metrics", "/healthz", "/readyz"]:
            assert requests.get(w.admin + path, timeout=5).status_code == 200
        assert "s3cret-admin-token" not in w.log_text() and "s3cret-admin-token" not in w.metrics()
    finally:
        w.stop()


def test_a_number_readers_disagree_on_is_refused(warden, provider):
    """Found by the body_fields fuzzer: `7e3333335` in a field Warden skips. Python reads it as
    inf, Go and serde_json refuse it: Warden cannot know what the provider acts on."""
    before = len(provider.requests)
    raw = b'{"model": "gpt-4o-mini", "messages": [], "temperature": 7e3333335}'
    r = requests.post(warden.base + "/v1/chat/completions", data=raw, timeout=10,
                      headers={"Authorization": f"Bearer {AGENT_KEY}", "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
    assert len(provider.requests) == before
