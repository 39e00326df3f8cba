"""Hot reload and revocation with the real binary: every way a policy changes on disk."""

import hashlib
import os
import signal
import threading
import time

import httpx
import pytest

from conftest import AGENT_KEY, OTHER_KEY, PROVIDER_ENV, standard_policy
from harness import chat, Warden, run_warden_cli, sha256_hex
from mock_provider import MockProvider

# SPEC.md "Reload": a changed, valid policy is live within 1 s of the file change.
DEADLINE = 1.0


post = chat


def wait_for(predicate, timeout):
    """Polls `predicate` until it returns a truthy value; returns (value, seconds taken)."""
    start = time.monotonic()
    while True:
        value = predicate()
        elapsed = time.monotonic() - start
        if value or elapsed > timeout:
            return value, elapsed
        time.sleep(0.01)


def refused_with(warden, key, code):
    return lambda: post(warden, key).headers.get("x-warden-error") == code


def reloads(warden, result):
    return warden.metric("warden_config_reloads_total", f'result="{result}"')


def revocations(body):
    return f"version: 1\nrevocations:\n{body}"


@pytest.fixture(scope="module")
def provider():
    p = MockProvider(slow_seconds=1.5)
    yield p
    p.close()


@pytest.fixture
def policy(provider):
    return standard_policy(provider.base_url)


@pytest.mark.parametrize("how", ["rename", "inplace"])
def test_a_revoked_key_is_refused_within_the_deadline(provider, policy, how):
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        assert post(w, AGENT_KEY).status_code == 200
        before = reloads(w, "ok")
        w.update({"warden.yaml": policy + "revocations:\n  keys: [{id: app-1, reason: leaked}]\n"}, how=how)
        revoked, took = wait_for(refused_with(w, AGENT_KEY, "credential_revoked"), DEADLINE)
        assert revoked, f"still allowed {took:.2f}s after the change ({how})"
        r = post(w, AGENT_KEY)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "credential_revoked"
        assert "leaked" not in r.text, "the reason is for operators, not for the agent"
        assert post(w, OTHER_KEY).status_code == 200, "other agents are untouched"
        assert reloads(w, "ok") == before + 1
    finally:
        w.stop()


def test_configmap_symlink_swap_revokes_an_agent_from_its_own_file(provider, policy):
    w = Warden(policy, env=PROVIDER_ENV, layout="configmap",
               files={"revocations.yaml": revocations("  agents: []\n")})
    try:
        assert post(w, AGENT_KEY).status_code == 200
        w.update({"revocations.yaml": revocations("  agents: [{id: app, reason: compromised}]\n")})
        revoked, took = wait_for(refused_with(w, AGENT_KEY, "agent_revoked"), DEADLINE)
        assert revoked, f"ConfigMap swap not picked up after {took:.2f}s"
        assert post(w, OTHER_KEY).status_code == 200
        # The version is the SHA-256 over each visible file's name and contents, in name order.
        digest = hashlib.sha256()
        for name in ["revocations.yaml", "warden.yaml"]:
            digest.update(name.encode() + b"\0" + (w.config_path / name).read_bytes() + b"\0")
        assert w.metric("warden_config_info", f'version="{digest.hexdigest()}"') == 1
        assert digest.hexdigest() in httpx.get(w.admin + "/readyz").text
        assert run_warden_cli("check", str(w.config_path)).stdout.count(digest.hexdigest()) == 1
        # The swap again: un-revoke.
        w.update({"revocations.yaml": revocations("  agents: []\n")})
        back, took = wait_for(lambda: post(w, AGENT_KEY).status_code == 200, DEADLINE)
        assert back, f"revocation not lifted {took:.2f}s after the swap"
    finally:
        w.stop()


def test_an_invalid_change_is_refused_whole_and_the_last_good_policy_stays(provider, policy):
    w = Warden(policy, env=PROVIDER_ENV, layout="dir")
    try:
        ok_before = reloads(w, "ok")
        # Valid YAML in one file, a typo in another: the valid part must not be applied either.
        w.update({"revocations.yaml": revocations("  agents: [app]\n  kyes: [narrow-1]\n")})
        counted, took = wait_for(lambda: reloads(w, "error") == 1, 3)
        assert counted, "the refused change was not counted"
        assert w.metric("warden_config_last_reload_successful") == 0
        assert post(w, AGENT_KEY).status_code == 200, "the revocation in the refused change applied"
        assert post(w, OTHER_KEY).status_code == 200
        log = w.log_text()
        assert "revocations.yaml:4:3: error: unknown field `kyes`" in log, log
        assert "refused" in log
        time.sleep(1.5)  # a poll or two later the same bad file is not re-counted
        assert reloads(w, "error") == 1
        assert reloads(w, "ok") == ok_before

        w.update({"revocations.yaml": revocations("  agents: [app]\n")})
        fixed, took = wait_for(refused_with(w, AGENT_KEY, "agent_revoked"), DEADLINE)
        assert fixed, f"the fixed policy was not applied after {took:.2f}s"
        assert w.metric("warden_config_last_reload_successful") == 1
        assert reloads(w, "ok") == ok_before + 1
    finally:
        w.stop()


def test_a_deleted_policy_file_keeps_the_last_good_policy(provider, policy):
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        os.unlink(w.policy_path)
        counted, _ = wait_for(lambda: reloads(w, "error") == 1, 3)
        assert counted
        assert post(w, AGENT_KEY).status_code == 200
        assert httpx.get(w.admin + "/readyz").status_code == 200
    finally:
        w.stop()


def test_sighup_reloads_without_a_watcher(provider, policy):
    w = Warden(policy, env=PROVIDER_ENV, args=["--no-watch"])
    try:
        before = reloads(w, "ok")
        w.proc.send_signal(signal.SIGHUP)
        # SIGHUP recompiles even an unchanged policy, so the counter moves with nothing to poll.
        counted, _ = wait_for(lambda: reloads(w, "ok") == before + 1, 3)
        assert counted, w.log_text()
        assert w.proc.poll() is None, "SIGHUP must not stop Warden"
        assert post(w, AGENT_KEY).status_code == 200
    finally:
        w.stop()


def test_polling_alone_picks_up_a_change(provider, policy):
    w = Warden(policy, env=PROVIDER_ENV, args=["--no-watch"])
    try:
        w.update({"warden.yaml": policy.replace("status: suspended", "status: active")})
        from conftest import SUSPENDED_KEY
        active, took = wait_for(lambda: post(w, SUSPENDED_KEY).status_code == 200, 3)
        assert active, "polling did not pick up the change"
    finally:
        w.stop()


def test_a_referenced_key_file_change_is_picked_up(provider, tmp_path):
    key_file = tmp_path / "openai.key"
    key_file.write_text("sk-first-key\n")
    policy = f"""version: 1
providers:
  openai:
    base_url: {provider.base_url}
    models: ["gpt-*"]
    api_key_file: {key_file}
agents:
  app:
    keys: [{{id: app-1, sha256: {sha256_hex(AGENT_KEY)}}}]
    models: ["gpt-4o-mini"]
"""
    w = Warden(policy)
    try:
        assert post(w, AGENT_KEY).status_code == 200
        assert provider.last().header("authorization") == "Bearer sk-first-key"
        tmp = tmp_path / ".openai.key.tmp"
        tmp.write_text("sk-rotated-key\n")
        os.rename(tmp, key_file)

        def rotated():
            post(w, AGENT_KEY)
            return provider.last().header("authorization") == "Bearer sk-rotated-key"
        done, took = wait_for(rotated, DEADLINE)
        assert done, f"rotated provider key not used {took:.2f}s after the change"
        assert "sk-rotated-key" not in w.log_text() + w.metrics()
    finally:
        w.stop()


def test_a_suspension_ends_by_itself_without_a_reload(provider):
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
    policy = standard_policy(provider.base_url).replace(
        "    status: suspended\n", f"    status: suspended\n    suspended_until: {until}\n")
    from conftest import SUSPENDED_KEY
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        r = post(w, SUSPENDED_KEY)
        assert r.status_code == 403 and r.json()["error"]["code"] == "agent_suspended"
        active, took = wait_for(lambda: post(w, SUSPENDED_KEY).status_code == 200, 6)
        assert active, "the suspension did not end"
        assert reloads(w, "ok") == 0, "no reload was needed"
    finally:
        w.stop()


LIMITED = f"""  rated:
    keys: [{{id: rated-1, sha256: {sha256_hex("sk-rated")}}}]
    models: ["gpt-4o-mini", "slow-model"]
    limits: {{requests_per_minute: 3, max_concurrent: 1}}
"""


def test_limits_are_not_reset_by_a_reload(provider):
    policy = standard_policy(provider.base_url, LIMITED)
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        assert [post(w, "sk-rated").status_code for _ in range(4)] == [200, 200, 200, 429]
        before = reloads(w, "ok")
        w.update({"warden.yaml": policy.replace("  narrow:", "  newcomer:\n    models: [gpt-4o]\n  narrow:")})
        reloaded, _ = wait_for(lambda: reloads(w, "ok") == before + 1, 3)
        assert reloaded
        r = post(w, "sk-rated")
        assert r.headers.get("x-warden-error") == "rate_limited", "the reload reset the request bucket"
    finally:
        w.stop()


def test_concurrency_slots_held_across_a_reload(provider):
    policy = standard_policy(provider.base_url, LIMITED.replace("requests_per_minute: 3", "requests_per_minute: 100"))
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        slow = threading.Thread(target=post, args=(w, "sk-rated", "slow-model"))
        slow.start()
        time.sleep(0.3)
        before = reloads(w, "ok")
        w.update({"warden.yaml": policy.replace("max_concurrent: 1", "max_concurrent: 1 ")})
        reloaded, _ = wait_for(lambda: reloads(w, "ok") == before + 1, 3)
        assert reloaded
        r = post(w, "sk-rated")
        assert r.headers.get("x-warden-error") == "concurrency_limited", "the reload forgot a held slot"
        slow.join()
        assert post(w, "sk-rated").status_code == 200
    finally:
        w.stop()


def test_removed_agent_loses_access_at_once_and_in_flight_requests_finish(provider, policy):
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        results = {}
        slow = threading.Thread(target=lambda: results.setdefault("r", post(w, AGENT_KEY, "slow-model")))
        slow.start()
        time.sleep(0.3)
        without_app = policy.replace("  app:\n", "  app-renamed:\n").replace(sha256_hex(AGENT_KEY), sha256_hex("sk-new"))
        w.update({"warden.yaml": without_app})
        gone, took = wait_for(refused_with(w, AGENT_KEY, "invalid_credentials"), DEADLINE)
        assert gone, f"removed agent still allowed {took:.2f}s later"
        slow.join()
        assert results["r"].status_code == 200, "a request in flight during the reload failed"
    finally:
        w.stop()


def test_streams_in_flight_survive_a_revocation(provider, policy):
    w = Warden(policy, env=PROVIDER_ENV)
    try:
        with httpx.stream("POST", w.base + "/v1/chat/completions",
                          json={"model": "gpt-4o-mini", "stream": True, "messages": []},
                          headers={"Authorization": f"Bearer {AGENT_KEY}"}, timeout=10) as r:
            assert r.status_code == 200
            chunks = r.iter_bytes()
            first = next(chunks)
            w.update({"warden.yaml": policy + "revocations:\n  agents: [app]\n"})
            revoked, _ = wait_for(refused_with(w, AGENT_KEY, "agent_revoked"), DEADLINE)
            assert revoked
            rest = b"".join(chunks)
        assert b"[DONE]" in first + rest, "the stream admitted before the revocation was cut"
    finally:
        w.stop()


POSITIONS_POLICY = """version: 1
providers:
  local: {kind: mock, models: ["mock-*"]}
agents:
  bot:
    models: ["mock-*"]
    suspended_until: tomorrow
revocations:
  agents: AGENTS
  tokens: [""]
"""


def test_check_reports_revocation_problems_with_positions(tmp_path):
    (tmp_path / "p.yaml").write_text(POSITIONS_POLICY.replace("AGENTS", "[ghost, {id: bot, reason: x, note: y}]"))
    out = run_warden_cli("check", str(tmp_path / "p.yaml"))
    assert out.returncode == 1
    assert "p.yaml:9:40: error: unknown field `note`, expected one of id, reason" in out.stdout, out.stdout
    (tmp_path / "p.yaml").write_text(POSITIONS_POLICY.replace("AGENTS", "[ghost]"))
    out = run_warden_cli("check", str(tmp_path / "p.yaml"))
    lines = out.stdout.splitlines()
    assert out.returncode == 1
    assert f"{tmp_path}/p.yaml:10:12: error: a revoked id must not be empty" in lines, out.stdout
    assert f"{tmp_path}/p.yaml:7:22: error: `suspended_until` needs `status: suspended`" in lines
    assert f"{tmp_path}/p.yaml:9:12: warning: revoked agent `ghost` is not defined in this policy" in lines
