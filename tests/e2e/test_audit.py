"""The audit trail with the real binary: chained, signed, shipped, spooled, verified."""

import functools
import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from collector import Collector
from conftest import AGENT_KEY, OTHER_KEY, PROVIDER_ENV, PROVIDER_KEY, standard_policy
from harness import chat, Warden, free_port, run_warden_cli
from mock_provider import MockProvider


post = functools.partial(chat, key=AGENT_KEY)


def wait_for(predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def audit_section(sink, spool, key=None, extra=""):
    text = f"audit:\n  sink: {sink}\n  spool_dir: {spool}\n{extra}"
    if key:
        text += f"  signing_key_file: {key}\n"
    return text


@pytest.fixture(scope="module")
def provider():
    p = MockProvider()
    yield p
    p.close()


@pytest.fixture
def signing_key(tmp_path):
    key = tmp_path / "audit.key"
    out = run_warden_cli("keygen", "--out", str(key))
    assert out.returncode == 0, out.stderr
    public = (tmp_path / "audit.key.pub").read_text().strip()
    assert public in out.stdout
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    return key, public


def verify(public, *files):
    return run_warden_cli("audit", "verify", "--key", public, *map(str, files))


def lines(path):
    return path.read_text().splitlines()


def test_file_sink_chain_verifies_and_holds_no_secret(provider, tmp_path, signing_key):
    key, public = signing_key
    log = tmp_path / "audit" / "audit.jsonl"
    policy = standard_policy(provider.base_url) + audit_section(
        f"{{file: {{path: {log}}}}}", tmp_path / "spool", key, "  checkpoint_every: 4\n")
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        codes = [post(w).status_code for _ in range(5)]
        codes.append(post(w, key="sk-wrong").status_code)
        codes.append(post(w, model="gpt-secret").status_code)
        codes.append(httpx.get(w.base + "/v1/models", headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code)
        assert codes == [200] * 5 + [401, 403, 200]
        assert wait_for(lambda: log.exists() and len(lines(log)) >= 10)
    finally:
        w.stop(signal.SIGTERM)
    records = [json.loads(line) for line in lines(log)]
    events = [r for r in records if r["type"] == "request"]
    assert [e["status"] for e in events] == codes
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert records[-1]["type"] == "checkpoint", "SIGTERM ends the log with a signed checkpoint"
    denied = events[5]
    assert denied["decision"] == "deny" and denied["code"] == "invalid_credentials"
    assert denied["credential"] == {"kind": "none", "key_id": None}
    not_allowed = events[6]
    assert (not_allowed["agent"], not_allowed["code"], not_allowed["credential"]["key_id"]) == \
        ("app", "model_not_allowed", "app-1")
    ok = events[0]
    assert ok["decision"] == "allow" and ok["provider"] == "openai" and ok["model"] == "gpt-4o-mini"
    assert ok["tokens"]["input"] > 0 and ok["upstream_ms"] > 0 and ok["ttfb_ms"] > 0
    assert len(ok["config_version"]) == 64 and ok["request_id"]
    text = log.read_text()
    for secret in [AGENT_KEY, OTHER_KEY, PROVIDER_KEY, "sk-wrong"]:
        assert secret not in text
    out = verify(public, log)
    assert out.returncode == 0, out.stdout
    assert f"{len(records)} records" in out.stdout and "signatures valid" in out.stdout


@pytest.fixture
def signed_log(provider, tmp_path, signing_key):
    key, public = signing_key
    log = tmp_path / "audit.jsonl"
    policy = standard_policy(provider.base_url) + audit_section(
        f"{{file: {{path: {log}}}}}", tmp_path / "spool", key, "  checkpoint_every: 3\n")
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        for _ in range(8):
            post(w)
        assert wait_for(lambda: log.exists() and len(lines(log)) >= 10)
    finally:
        w.stop(signal.SIGTERM)
    assert verify(public, log).returncode == 0
    return log, public


def tamper(signed_log, edit):
    """Applies `edit` to the log's lines, writes them back, and verifies the result."""
    log, public = signed_log
    records = lines(log)
    edit(records)
    log.write_text("\n".join(records) + "\n")
    return log, verify(public, log)


def test_an_edited_line_is_named(signed_log):
    def edit(records):
        records[4] = records[4].replace('"status":200', '"status":403')
    log, out = tamper(signed_log, edit)
    assert out.returncode == 1
    assert f"{log}:5: seq 5: hash does not match" in out.stdout, out.stdout


def test_a_deleted_line_is_a_gap(signed_log):
    def edit(records):
        del records[2]
    log, out = tamper(signed_log, edit)
    assert out.returncode == 1
    assert f"{log}:3: seq 4: expected seq 3" in out.stdout, out.stdout


def test_reordered_lines_are_detected(signed_log):
    def edit(records):
        records[5], records[6] = records[6], records[5]
    log, out = tamper(signed_log, edit)
    assert out.returncode == 1
    assert f"{log}:6:" in out.stdout, out.stdout


def test_a_rewritten_chain_fails_the_signature(signed_log, tmp_path):
    """Re-hashing every record after an edit keeps the chain consistent; only the signatures
    (made with a key the forger does not have) catch it."""
    log, public = signed_log
    other = tmp_path / "other.key"
    run_warden_cli("keygen", "--out", str(other))
    out = verify((tmp_path / "other.key.pub").read_text().strip(), log)
    assert out.returncode == 1 and "signature does not verify" in out.stdout
    assert run_warden_cli("audit", "verify", "--key", "not-base64!", str(log)).returncode == 2


def test_http_collector_outage_loses_nothing(provider, tmp_path, signing_key):
    key, public = signing_key
    collector = Collector()
    collector.up = False
    policy = standard_policy(provider.base_url) + audit_section(
        f"{{http: {{url: {collector.url}/ingest}}}}", tmp_path / "spool", key)
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        sent = [post(w).headers["x-request-id"] for _ in range(20)]
        assert wait_for(lambda: w.metric("warden_audit_events_total", 'outcome="spooled"') >= 20)
        assert w.metric("warden_audit_spool_bytes") > 0
        assert collector.attempts > 0 and not collector.records
        collector.up = True
        sent += [post(w).headers["x-request-id"] for _ in range(10)]
        assert wait_for(lambda: len(collector.events()) == 30, timeout=40), len(collector.events())
        assert sorted(e["request_id"] for e in collector.events()) == sorted(sent)
        seqs = sorted(seq for _, seq in collector.unique())
        assert seqs == list(range(1, len(seqs) + 1)), "no gap in what arrived"
        assert wait_for(lambda: w.metric("warden_audit_spool_bytes") == 0)
    finally:
        w.stop()
        collector.close()


def test_kill_9_during_an_outage_then_restart_ships_the_spool(provider, tmp_path, signing_key):
    key, public = signing_key
    port = free_port()
    spool = tmp_path / "spool"
    policy = standard_policy(provider.base_url) + audit_section(
        f"{{http: {{url: http://127.0.0.1:{port}/ingest}}}}", spool, key)
    w = Warden(policy, env=PROVIDER_ENV)
    sent = [post(w).headers["x-request-id"] for _ in range(15)]
    assert wait_for(lambda: w.metric("warden_audit_events_total", 'outcome="spooled"') >= 15)
    w.stop(signal.SIGKILL)

    collector = Collector(port)
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        sent.append(post(w).headers["x-request-id"])
        assert wait_for(lambda: len(collector.events()) == 16, timeout=40), len(collector.events())
        assert sorted(e["request_id"] for e in collector.events()) == sorted(sent)
        records = sorted(collector.unique().values(), key=lambda r: r["seq"])
        assert {r["instance"] for r in records} == {records[0]["instance"]}, "one chain across the restart"
        for before, after in zip(records, records[1:]):
            assert after["seq"] == before["seq"] + 1 and after["prev"] == before["hash"]
    finally:
        w.stop()
        collector.close()


def test_sigterm_under_load_flushes_every_event(provider, tmp_path):
    log = tmp_path / "audit.jsonl"
    slow = MockProvider(slow_seconds=1.0)
    policy = standard_policy(slow.base_url) + audit_section(f"{{file: {{path: {log}}}}}", tmp_path / "spool")
    w = Warden(policy, env=PROVIDER_ENV)
    answered = []
    stop = threading.Event()

    def client(model):
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.post(w.base + "/v1/chat/completions", json={"model": model, "messages": []},
                               headers={"Authorization": f"Bearer {AGENT_KEY}"})
                    answered.append(r.headers.get("x-request-id"))
                except httpx.HTTPError:
                    return
    try:
        with ThreadPoolExecutor(6) as pool:
            for i in range(6):
                pool.submit(client, "slow-model" if i < 2 else "gpt-4o-mini")
            time.sleep(1.5)
            w.proc.send_signal(signal.SIGTERM)
            w.proc.wait(timeout=30)
            stop.set()
        assert w.proc.returncode == 0
        ids = [json.loads(line).get("request_id") for line in lines(log)]
        assert len(answered) > 20
        missing = set(answered) - set(ids)
        assert not missing, f"{len(missing)} answered requests have no audit event"
    finally:
        w.stop()
        slow.close()


def test_otlp_payloads_decode_with_the_official_protos(provider, tmp_path):
    collector = Collector()
    policy = standard_policy(provider.base_url) + audit_section(
        f"{{otlp: {{endpoint: {collector.url}}}}}", tmp_path / "spool")
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        post(w)
        post(w, key="sk-wrong")
        assert wait_for(lambda: len(collector.events()) == 2)
        request = collector.otlp_requests[0]
        resource = {a.key: a.value.string_value for a in request.resource_logs[0].resource.attributes}
        assert resource["service.name"] == "warden"
        record = request.resource_logs[0].scope_logs[0].log_records[0]
        attributes = {a.key: a.value for a in record.attributes}
        assert attributes["warden.agent"].string_value == "app"
        assert attributes["warden.status"].int_value == 200
        assert attributes["warden.credential.key_id"].string_value == "app-1"
        assert attributes["warden.seq"].int_value >= 1
        assert record.time_unix_nano > 0
        assert json.loads(record.body.string_value)["hash"] == attributes["warden.hash"].string_value
    finally:
        w.stop()
        collector.close()


def test_check_reports_audit_problems(tmp_path):
    (tmp_path / "p.yaml").write_text("""version: 1
providers:
  local: {kind: mock, models: ["mock-*"]}
audit:
  sink: {http: {url: "ftp://collector"}}
  spool_dir: /tmp/x
""")
    out = run_warden_cli("check", str(tmp_path / "p.yaml"))
    assert out.returncode == 1
    assert "p.yaml:5:9: error: `url` must be an http:// or https:// URL" in out.stdout, out.stdout
    assert "warning: no `signing_key_file`" in out.stdout


def test_rotated_files_verify_as_one_chain(provider, tmp_path, signing_key):
    key, public = signing_key
    logs = tmp_path / "logs"
    policy = standard_policy(provider.base_url) + audit_section(
        f"{{file: {{path: {logs}/audit.jsonl, max_bytes: 3000, keep: 50}}}}", tmp_path / "spool", key,
        "  checkpoint_every: 5\n")
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        for _ in range(6):
            for _ in range(5):
                post(w)
            time.sleep(0.1)  # a batch each, so the file grows past max_bytes between batches
    finally:
        w.stop(signal.SIGTERM)
    files = sorted(p.name for p in logs.iterdir())
    assert len(files) > 3 and "audit.jsonl.1" in files, files
    out = verify(public, logs)
    assert out.returncode == 0, out.stdout
    total = sum(len(lines(p)) for p in logs.iterdir())
    assert f"{total} records (seq 1..{total})" in out.stdout, out.stdout
    (logs / "audit.jsonl.2").unlink()
    out = verify(public, logs)
    assert out.returncode == 1 and "records missing or out of order" in out.stdout


def test_a_full_spool_drops_loudly_and_counts(provider, tmp_path):
    port = free_port()
    policy = standard_policy(provider.base_url) + audit_section(
        f"{{http: {{url: http://127.0.0.1:{port}/ingest}}}}", tmp_path / "spool",
        extra="  spool_max_bytes: 4000\n")
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        for _ in range(20):
            assert post(w).status_code == 200, "a full spool never fails requests"
        assert wait_for(lambda: w.metric("warden_audit_events_total", 'outcome="dropped"') > 0)
        assert 0 < w.metric("warden_audit_spool_bytes") <= 4000
        assert "audit spool is full" in w.log_text()
    finally:
        w.stop()
