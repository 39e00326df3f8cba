"""A hostile agent gets no more than its policy says: each finding of the code review, reproduced
against the real binary."""

import json
import shutil
import socket
import threading
import time

import httpx
import pytest

from conftest import AGENT_KEY, PROVIDER_ENV
from harness import Warden, eventually, run_warden_cli, sha256_hex
from mock_provider import MockProvider

BOTH_KEY = "sk-both-limits"
WILD_KEY = "sk-wildcard-models"
LISTED_KEY = "sk-listed-endpoints"
CHAT = "/v1/chat/completions"
MAX_BODY = 9_437_184


def policy(upstream, log, spool):
    return f"""version: 1
providers:
  openai:
    base_url: {upstream}
    models: ["gpt-*", "slow-*", "broken-*"]
    api_key_env: TEST_OPENAI_KEY
    headers: {{OpenAI-Organization: org-operator}}
agents:
  app:
    keys: [{{id: app-1, sha256: {sha256_hex(AGENT_KEY)}}}]
    models: ["gpt-4o-mini", "broken-model"]
  both:
    keys: [{{id: both-1, sha256: {sha256_hex(BOTH_KEY)}}}]
    models: ["slow-model", "gpt-4o-mini"]
    limits: {{requests_per_minute: 3, max_concurrent: 1}}
  wild:
    keys: [{{id: wild-1, sha256: {sha256_hex(WILD_KEY)}}}]
    models: ["*"]
  listed:
    keys: [{{id: listed-1, sha256: {sha256_hex(LISTED_KEY)}}}]
    models: ["gpt-*"]
    endpoints: ["/v1/chat/completions", "POST /v1/fine_tuning/jobs"]
audit:
  sink: {{file: {{path: {log}}}}}
  spool_dir: {spool}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    provider = MockProvider(slow_seconds=1.0)
    log = tmp / "audit.jsonl"
    w = Warden(policy(provider.base_url, log, tmp / "spool"), env=PROVIDER_ENV,
               server_extra=f"  max_body_bytes: {MAX_BODY}\n")
    w.provider, w.audit_log = provider, log
    yield w
    w.stop()
    provider.close()


def call(w, key=AGENT_KEY, path=CHAT, method="POST", body=None, headers=None, **kw):
    h = [("authorization", f"Bearer {key}")] if key else []
    h += list((headers or {}).items()) if isinstance(headers, dict) else (headers or [])
    content = json.dumps(body if body is not None else {"model": "gpt-4o-mini"}).encode() \
        if not isinstance(body, bytes) else body
    return httpx.request(method, w.base + path, content=content, timeout=10,
                         headers=h + [("content-type", "application/json")], **kw)


def wait(predicate, timeout=10):
    """Waits until `predicate()` is true: a request is recorded (metrics, audit) just after its
    last byte, and the audit file is written by the shipper a moment later."""
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def refused(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["x-warden-error"] == code
    assert r.json()["error"]["code"] == code


def audit_records(w, **match):
    if not w.audit_log.exists():
        return []
    records = [json.loads(line) for line in w.audit_log.read_text().splitlines() if line]
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


# 1. Closed by default.

def test_an_agent_without_endpoints_reaches_inference_only(env):
    assert call(env).status_code == 200
    refused(call(env, path="/v1/fine_tuning/jobs", body={"model": "gpt-4o-mini"}), 403, "endpoint_not_allowed")
    refused(call(env, path="/v1/files/file-of-another-agent", method="DELETE"), 403, "endpoint_not_allowed")
    refused(call(env, path="/v1/batches"), 403, "endpoint_not_allowed")
    refused(call(env, method="DELETE"), 403, "endpoint_not_allowed")
    refused(call(env, method="PUT"), 403, "endpoint_not_allowed")
    before = len(env.provider.requests)
    refused(call(env, path="/v1/files"), 403, "endpoint_not_allowed")
    assert len(env.provider.requests) == before, "nothing reached the provider"


def test_listed_endpoints_and_their_methods(env):
    r = call(env, key=LISTED_KEY, path="/v1/fine_tuning/jobs", body={"model": "gpt-4o-mini"})
    assert r.status_code == 200 and env.provider.last().path == "/v1/fine_tuning/jobs"
    refused(call(env, key=LISTED_KEY, path="/v1/fine_tuning/jobs", method="DELETE"), 403, "endpoint_not_allowed")
    refused(call(env, key=LISTED_KEY, path="/v1/embeddings"), 403, "endpoint_not_allowed")


def test_check_warns_about_listed_management_endpoints(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("""version: 1
providers:
  m: {kind: mock, models: ["m-*"]}
agents:
  ops:
    models: ["m-1"]
    endpoints: ["/v1/chat/completions", "GET,DELETE /v1/files/*", "/v1/*"]
  typo:
    models: ["m-1"]
    endpoints: ["get /v1/models"]
""")
    out = run_warden_cli("check", str(path))
    assert out.returncode == 1, out.stdout
    lines = out.stdout.splitlines()
    assert any(":7:" in l and "warning" in l and "`GET,DELETE /v1/files/*`" in l and "management" in l for l in lines), out.stdout
    assert any("warning" in l and "`/v1/*`" in l for l in lines), out.stdout
    assert not any("/v1/chat/completions`" in l for l in lines), out.stdout
    assert any(":10:" in l and "error" in l and "not a method" in l for l in lines), out.stdout


# 2. The operator's headers are not the agent's.

def test_billing_headers_are_the_operators(env):
    r = call(env, headers={"OpenAI-Organization": "org-someone-else", "OpenAI-Project": "proj-x",
                           "X-Request-ID": "agent-chosen-1"})
    assert r.status_code == 200
    seen = env.provider.last()
    assert seen.header("openai-organization") == "org-operator"
    assert seen.header("openai-project") is None
    # Warden's id is X-Request-ID (the client's goes beside it); the provider's own id is kept too.
    assert r.headers["x-request-id"] == seen.header("x-request-id") != "agent-chosen-1"
    assert seen.header("x-client-request-id") == "agent-chosen-1"
    assert r.headers["x-provider-request-id"].startswith("req_mock_")
    provider_id = r.headers["x-provider-request-id"]
    wait(lambda: audit_records(env, client_request_id="agent-chosen-1"))
    [record] = audit_records(env, client_request_id="agent-chosen-1")
    assert record["provider_request_id"] == provider_id


# 3. Ambiguous credentials are refused.

def test_ambiguous_credentials_get_401(env):
    two = [("authorization", f"Bearer {AGENT_KEY}"), ("authorization", "Bearer sk-other")]
    refused(call(env, key=None, headers=two), 401, "invalid_credentials")
    same_twice = [("authorization", f"Bearer {AGENT_KEY}"), ("authorization", f"Bearer {AGENT_KEY}")]
    refused(call(env, key=None, headers=same_twice), 401, "invalid_credentials")
    refused(call(env, headers={"x-api-key": "sk-something-else"}), 401, "invalid_credentials")
    refused(call(env, key=None, headers=[("x-api-key", AGENT_KEY), ("x-api-key", "b")]), 401, "invalid_credentials")
    assert call(env, headers={"x-api-key": AGENT_KEY}).status_code == 200


# 4. A refusal spends no limit.

def test_a_request_refused_for_concurrency_spends_no_rate(env):
    slow = {}
    t = threading.Thread(target=lambda: slow.setdefault("r", call(env, key=BOTH_KEY, body={"model": "slow-model"})))
    t.start()
    time.sleep(0.4)
    for _ in range(4):
        refused(call(env, key=BOTH_KEY), 429, "concurrency_limited")
    t.join()
    assert slow["r"].status_code == 200
    # 3 per minute: the slow request took one; the four refused ones took none.
    assert [call(env, key=BOTH_KEY).status_code for _ in range(2)] == [200, 200]
    refused(call(env, key=BOTH_KEY), 429, "rate_limited")


# 5. What Warden says it refuses, it refuses.

def test_invalid_utf8_and_lone_surrogates_anywhere_are_invalid_json(env):
    bad_utf8 = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\xff\xfe"}]}'
    refused(call(env, body=bad_utf8), 400, "invalid_json")
    lone = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\ud800"}]}'
    refused(call(env, body=lone), 400, "invalid_json")
    pair = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\ud83d\\ude00 \\\\ud800"}]}'
    assert call(env, body=pair).status_code == 200


# 6. Bounded cardinality.

def test_invented_model_names_share_one_label(env):
    for i in range(20):
        assert call(env, key=WILD_KEY, body={"model": f"gpt-invented-{i}"}).status_code == 200

    def check():
        lines = [l for l in env.metrics().splitlines()
                 if l.startswith("warden_requests_total{") and 'agent="wild"' in l]
        assert not any("gpt-invented" in l for l in lines), lines
        [other] = [l for l in lines if 'model="_other"' in l and 'code="ok"' in l]
        assert other.endswith(" 20")
    eventually(check)


# 7. No memory pinning.

def vm_size_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    raise AssertionError("no VmSize")


def test_a_declared_length_alone_pins_no_memory(env):
    before = vm_size_kb(env.proc.pid)
    sockets = []
    try:
        for _ in range(30):
            s = socket.create_connection(("127.0.0.1", env.port))
            s.sendall((f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {AGENT_KEY}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {MAX_BODY - 1}\r\n\r\n").encode()
                      + b'{"model":"gpt-4o-mini","x":"' + b"a" * 1000)
            sockets.append(s)
        time.sleep(0.3)
        for s in sockets:
            s.sendall(b"a" * 1000)
        time.sleep(0.5)
        grown_mb = (vm_size_kb(env.proc.pid) - before) / 1024
        # 30 connections x 9 MiB declared would be 270 MiB if capacity followed the declaration.
        assert grown_mb < 100, f"grew {grown_mb:.0f} MiB"
    finally:
        for s in sockets:
            s.close()


# 8. Streams that end badly are recorded as such.

def code_count(w, agent, code):
    for line in w.metrics().splitlines():
        if line.startswith("warden_requests_total{") and f'agent="{agent}"' in line and f'code="{code}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0


def test_a_client_hanging_up_mid_stream_is_client_closed(env):
    before = code_count(env, "app", "client_closed")
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": []}).encode()
    s = socket.create_connection(("127.0.0.1", env.port))
    s.sendall((f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {AGENT_KEY}\r\n"
               f"X-Request-ID: hangs-up-1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    first = s.recv(4096)
    assert first.startswith(b"HTTP/1.1 200"), first
    s.close()
    wait(lambda: code_count(env, "app", "client_closed") == before + 1)
    wait(lambda: audit_records(env, client_request_id="hangs-up-1"))
    [record] = audit_records(env, client_request_id="hangs-up-1")
    assert record["code"] == "client_closed" and record["status"] == 200


def test_an_upstream_failing_mid_stream_is_not_ok(env):
    before_ok = code_count(env, "app", "ok")
    with httpx.stream("POST", env.base + CHAT, timeout=10,
                      headers={"Authorization": f"Bearer {AGENT_KEY}", "X-Request-ID": "breaks-1"},
                      json={"model": "broken-model", "stream": True}) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.HTTPError):
            for _ in r.iter_bytes():
                pass
    wait(lambda: audit_records(env, client_request_id="breaks-1"))
    [record] = audit_records(env, client_request_id="breaks-1")
    assert record["code"] == "upstream_unavailable", record
    assert code_count(env, "app", "upstream_unavailable") >= 1
    assert code_count(env, "app", "ok") == before_ok


# 9. `warden audit verify` never calls a forgery signed.

def canonical(record):
    fields = {k: v for k, v in record.items() if k not in ("hash", "signature")}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def rechain(records):
    """What a forger with write access but no key can do: renumber and re-hash every record."""
    import hashlib
    prev = "0" * 64
    out = []
    for seq, record in enumerate(records, start=1):
        record = dict(record, seq=seq, prev=prev)
        record.pop("signature", None)
        record["hash"] = hashlib.sha256(canonical(record).encode()).hexdigest()
        prev = record["hash"]
        out.append(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
    return out


@pytest.fixture
def signed(env, tmp_path):
    """A signed log of a few requests, written by a Warden of its own."""
    key = tmp_path / "audit.key"
    assert run_warden_cli("keygen", "--out", str(key)).returncode == 0
    public = (tmp_path / "audit.key.pub").read_text().strip()
    log = tmp_path / "signed.jsonl"
    text = policy(env.provider.base_url, log, tmp_path / "spool") + \
        f"  signing_key_file: {key}\n  checkpoint_every: 3\n"
    w = Warden(text, env=PROVIDER_ENV)
    try:
        for _ in range(5):
            assert call(w).status_code == 200
        wait(lambda: log.exists() and len(log.read_text().splitlines()) >= 6)
    finally:
        w.stop(15)
    assert run_warden_cli("audit", "verify", "--key", public, str(log)).returncode == 0
    return log, public


def test_a_log_stripped_of_its_checkpoints_is_not_called_signed(signed):
    log, public = signed
    records = [json.loads(l) for l in log.read_text().splitlines() if l]
    requests = [r for r in records if r.get("type") != "checkpoint"]
    log.write_text("\n".join(rechain(requests)) + "\n")
    out = run_warden_cli("audit", "verify", "--key", public, str(log))
    assert out.returncode == 1, out.stdout
    assert "unsigned" in out.stdout and "signatures valid" not in out.stdout, out.stdout
    # Without a key there is nothing to check signatures against: intact, and said so.
    out = run_warden_cli("audit", "verify", str(log))
    assert out.returncode == 0 and "signatures not checked" in out.stdout, out.stdout


def test_a_duplicate_key_is_tampering(signed):
    log, public = signed
    lines = log.read_text().splitlines()
    first_request = next(i for i, l in enumerate(lines) if '"type":"request"' in l)
    lines[first_request] = lines[first_request].replace('{"agent":"app"', '{"agent":"someone-else","agent":"app"', 1)
    assert '"agent":"someone-else"' in lines[first_request]
    log.write_text("\n".join(lines) + "\n")
    out = run_warden_cli("audit", "verify", "--key", public, str(log))
    assert out.returncode == 1, out.stdout
    assert f"{log}:{first_request + 1}:" in out.stdout and "duplicate key `agent`" in out.stdout, out.stdout


def test_a_lost_spool_does_not_restart_a_named_chain_at_1(env, tmp_path):
    log1, log2, spool = tmp_path / "one.jsonl", tmp_path / "two.jsonl", tmp_path / "spool"
    seqs = []
    for log in (log1, log2):
        text = policy(env.provider.base_url, log, spool) + "  instance: pod-a\n"
        w = Warden(text, env=PROVIDER_ENV)
        try:
            assert call(w).status_code == 200
            wait(lambda: log.exists() and log.read_text().strip())
        finally:
            w.stop(15)
        seqs.append([json.loads(l)["seq"] for l in log.read_text().splitlines() if l])
        shutil.rmtree(spool)
    assert min(seqs[1]) > max(seqs[0]), seqs
    assert {json.loads(l)["instance"] for l in log2.read_text().splitlines()} == {"pod-a"}
