"""Limits and revocations shared by a fleet of Wardens through a real `redis-server`: three
Warden processes on one agent's limits, Redis killed and restarted under each `on_unavailable`
mode, and revocations pushed by the CLI reaching every Warden within a second."""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import jwt
import pytest

from conftest import PROVIDER_ENV
from harness import Warden, eventually, free_port, run_warden_cli, sha256_hex
from mock_provider import MockProvider

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is installed by scripts/ensure-test-deps")

BOT_KEY = "sk-fleet-bot"
VICTIM_KEY = "sk-fleet-victim"
FREE_KEY = "sk-fleet-free"
RETIRED_KEY = "sk-fleet-retired"
# Leases never exceed max(1, limit / 50) (src/fleet/lease.rs): what each Warden may admit on
# credit beyond what Redis granted is one lease plus one request.
MAX_LEASE_DIVISOR = 50


class RedisServer:
    """A throwaway redis-server on a free loopback port, without persistence; `args` are more
    options (a password, TLS)."""

    def __init__(self, args=(), plain=True):
        self.port = free_port()
        self.args = list(args)
        self.plain = plain
        self.proc = None
        self.start()

    def start(self):
        ports = ["--port", str(self.port)] if self.plain else ["--port", "0", "--tls-port",
                                                               str(self.port)]
        self.proc = subprocess.Popen(
            ["redis-server", *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             *self.args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.plain:
            eventually(lambda: self._assert_up(), timeout=10)
        else:
            eventually(lambda: self._assert_listening(), timeout=10)

    def _assert_listening(self):
        import socket
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError as e:
            raise AssertionError(f"redis-server is not up yet: {e}") from e

    def _assert_up(self):
        import socket
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                reply = s.recv(64)
                assert reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
        except OSError as e:
            raise AssertionError(f"redis-server is not up yet: {e}") from e

    def command(self, *args):
        """Runs one command and returns its reply line(s) (a tiny RESP client for checks)."""
        import socket
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            parts = [f"*{len(args)}\r\n".encode()]
            for a in args:
                a = str(a).encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
            s.sendall(b"".join(parts))
            time.sleep(0.05)
            return s.recv(65536).decode()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self):
        if self.proc.poll() is None:
            self.kill()


def fleet_policy(redis, provider, on_unavailable="local", bot_limits="{requests_per_minute: 30}",
                 extra=""):
    return f"""version: 1
providers:
  openai:
    base_url: {provider.base_url}
    models: ["gpt-*"]
    api_key_env: TEST_OPENAI_KEY
  local: {{kind: mock, models: ["mock-*"]}}
fleet:
  redis: {{url: "redis://127.0.0.1:{redis.port}/0"}}
  on_unavailable: {on_unavailable}
agents:
  bot:
    keys: [{{id: bot-1, sha256: {sha256_hex(BOT_KEY)}}}]
    models: ["gpt-*", "mock-*"]
    limits: {bot_limits}
  victim:
    keys: [{{id: victim-1, sha256: {sha256_hex(VICTIM_KEY)}}}]
    models: ["mock-*"]
  free:
    keys: [{{id: free-1, sha256: {sha256_hex(FREE_KEY)}}}]
    models: ["mock-*"]
  retired:
    keys: [{{id: retired-1, sha256: {sha256_hex(RETIRED_KEY)}}}]
    models: ["mock-*"]
{extra}"""


def chat(warden, key, model="mock-1", stream=False, max_tokens=5, timeout=10):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
    return httpx.post(warden.base + "/v1/chat/completions", json=body, timeout=timeout,
                      headers={"Authorization": f"Bearer {key}"})


def clear_of_minute_boundary(margin=8):
    while time.time() % 60 > 60 - margin:
        time.sleep(0.2)


@pytest.fixture(scope="module")
def provider():
    p = MockProvider(stream_interval=0.4)
    yield p
    p.close()


@pytest.fixture(scope="module")
def redis():
    r = RedisServer()
    yield r
    r.close()


@pytest.fixture(scope="module")
def fleet(redis, provider, tmp_path_factory):
    """Three Wardens on one policy; the first also keeps an audit trail."""
    audit_dir = tmp_path_factory.mktemp("fleet-audit")
    issuer_key = audit_dir / "issuer.key"
    assert run_warden_cli("keygen", "--out", str(issuer_key)).returncode == 0
    public = (audit_dir / "issuer.key.pub").read_text().strip()
    issuers = f"""issuers:
  corp: {{ed25519: "{public}", audience: warden}}
revocations:
  agents: [{{id: retired, reason: "retired in git"}}]
"""
    audit = f"""audit:
  sink: {{file: {{path: {audit_dir / "audit.jsonl"}}}}}
  spool_dir: {audit_dir / "spool"}
"""
    wardens = [Warden(fleet_policy(redis, provider, extra=issuers + (audit if i == 0 else "")),
                      env=PROVIDER_ENV) for i in range(3)]
    wardens[0].audit_log = audit_dir / "audit.jsonl"
    wardens[0].issuer_key = issuer_key
    yield wardens
    for w in wardens:
        w.stop()


def test_three_wardens_share_one_request_rate(fleet, redis):
    limit = 30
    started = time.time()
    with ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(lambda i: chat(fleet[i % 3], BOT_KEY).status_code, range(120)))
    elapsed = time.time() - started
    counts = Counter(statuses)
    # Each Warden alone would admit the whole limit (90 together). The fleet admits the limit,
    # plus what the bucket refills while the test runs, plus at most one lease and one request
    # of credit per Warden.
    refilled = int(elapsed * limit / 60) + 1
    bound = 3 * (max(1, limit // MAX_LEASE_DIVISOR) + 1)
    assert counts[200] <= limit + refilled + bound, counts
    assert counts[200] >= limit - 3, counts
    assert counts[200] + counts[429] == 120, counts
    assert "warden:limit:bot:rpm" in redis.command("KEYS", "warden:*")
    for w in fleet:
        assert w.metric("warden_fleet_mode", 'mode="shared"') == 1
        assert w.metric("warden_fleet_lease_refills_total") > 0
        assert w.metric("warden_fleet_redis_round_trips_total", 'result="ok"') > 0


def test_a_refusal_from_the_shared_rate_carries_retry_headers(fleet):
    # The bucket was emptied by the test above (or is now): keep asking until one is refused.
    for _ in range(60):
        r = chat(fleet[1], BOT_KEY)
        if r.status_code == 429:
            assert r.headers["x-warden-error"] == "rate_limited"
            assert int(r.headers["retry-after"]) >= 1
            assert int(r.headers["retry-after-ms"]) >= 1
            return
    pytest.fail("the shared bucket never refused")


TEAM = """teams:
  finance: {limits: {tokens_per_minute: 5000}}
"""


@pytest.mark.parametrize("whose", ["agent", "team"])
def test_a_token_budget_is_shared_under_concurrent_streams(redis, provider, whose):
    limit = 5000
    max_tokens = 1000
    if whose == "agent":
        policy = fleet_policy(redis, provider, bot_limits=f"{{tokens_per_minute: {limit}}}")
    else:  # the bot's team holds the budget (the bot has none of its own)
        policy = fleet_policy(redis, provider, bot_limits="{}", extra=TEAM).replace(
            "  bot:\n", "  bot:\n    owner: finance\n")
    wardens = [Warden(policy, env=PROVIDER_ENV) for _ in range(3)]
    try:
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                           "max_tokens": max_tokens, "stream": True}).encode()
        reservation = len(body) + max_tokens  # a prompt's bound is its byte count
        clear_of_minute_boundary()
        barrier = threading.Barrier(24)

        def stream(i):
            barrier.wait()
            with httpx.stream("POST", wardens[i % 3].base + "/v1/chat/completions", content=body,
                              timeout=20, headers={"Authorization": f"Bearer {BOT_KEY}",
                                                   "Content-Type": "application/json"}) as r:
                r.read()
                return r.status_code, r.headers.get("x-warden-error")

        with ThreadPoolExecutor(24) as pool:
            outcomes = Counter(pool.map(stream, range(24)))
        admitted = outcomes[(200, None)]
        # Streams hold their reservation while they run (about 2 s here), so only what fits
        # the minute's budget runs at once: 4 of them. Alone, each Warden would admit 4.
        bound = 3 * (max(1, limit // MAX_LEASE_DIVISOR) + reservation)
        assert admitted * reservation <= limit + bound, outcomes
        assert admitted >= limit // reservation - 1, outcomes
        assert admitted < 3 * (limit // reservation), outcomes
        assert admitted + outcomes[(429, "token_budget_exhausted")] == 24, outcomes
        holder = "bot" if whose == "agent" else "team:finance"
        keys = redis.command("KEYS", f"warden:limit:{holder}:tokens:minute:*")
        assert f"warden:limit:{holder}:tokens:minute:" in keys
    finally:
        for w in wardens:
            w.stop()


PAYER_KEY = "sk-fleet-payer"
PAYER = f"""  payer:
    keys: [{{id: payer-1, sha256: {sha256_hex(PAYER_KEY)}}}]
    models: ["mock-*"]
    actions:
      allow: [send_email, transfer_funds]
      per_day: {{send_email: 5}}
      usd_per_day: 100
"""


def test_action_counts_and_amounts_are_shared(redis, provider):
    wardens = [Warden(fleet_policy(redis, provider, extra=PAYER), env=PROVIDER_ENV)
               for _ in range(3)]

    def verify(i, action, amount=None):
        body = {"action": action, "target": "someone"}
        if amount is not None:
            body["parameters"] = {"amount": amount, "currency": "USD"}
        r = httpx.post(wardens[i % 3].base + "/v1/verify", json=body, timeout=10,
                       headers={"Authorization": f"Bearer {PAYER_KEY}"})
        assert r.status_code == 200
        return r.json()

    try:
        emails = [verify(i, "send_email") for i in range(15)]
        verified = sum(a["verified"] for a in emails)
        # 5 a day for the fleet (each Warden alone would verify 5: 15 together); the bound
        # allows one lease (1) and one action of credit per Warden.
        assert 5 <= verified <= 5 + 3 * 2, [a["errors"] for a in emails]
        refused = [a for a in emails if not a["verified"]]
        assert all([e["code"] for e in a["errors"]] == ["action_limit"] for a in refused)

        transfers = [verify(i, "transfer_funds", 30) for i in range(9)]
        paid = sum(a["verified"] for a in transfers)
        # $100 a day: 3 transfers of $30 fit; credit is at most $2 (1/50) plus one transfer
        # per Warden. Alone, each Warden would pay 3 (9 together).
        assert 3 <= paid <= (100 + 3 * (2 + 30)) // 30, [a["errors"] for a in transfers]
        assert all(e["code"] == "monetary_limit" for a in transfers if not a["verified"]
                   for e in a["errors"])
        assert "warden:limit:payer:actions:count:send_email:" in redis.command(
            "KEYS", "warden:limit:payer:actions:*")
    finally:
        for w in wardens:
            w.stop()


def wait_mode(warden, mode, timeout=5):
    def check():
        assert warden.metric("warden_fleet_mode", f'mode="{mode}"') == 1
    eventually(check, timeout=timeout)


@pytest.mark.parametrize("mode", ["local", "deny", "allow"])
def test_redis_killed_and_restarted(provider, mode):
    redis = RedisServer()
    w = Warden(fleet_policy(redis, provider, on_unavailable=mode,
                            bot_limits="{requests_per_minute: 4}"), env=PROVIDER_ENV)
    try:
        wait_mode(w, "shared")
        assert chat(w, BOT_KEY).status_code == 200
        redis.kill()
        wait_mode(w, mode)
        statuses = [chat(w, BOT_KEY) for _ in range(8)]
        codes = [r.status_code for r in statuses]
        if mode == "local":
            # This Warden alone enforces the whole limit, 4 per minute, counting the request
            # the fleet admitted before Redis went: 3 more, not a fresh 4.
            assert codes.count(200) == 3 and codes.count(429) == 5, codes
        elif mode == "deny":
            assert codes == [503] * 8, codes
            r = statuses[0]
            assert r.headers["x-warden-error"] == "fleet_unavailable"
            assert r.json()["error"]["code"] == "fleet_unavailable"
            assert int(r.headers["retry-after"]) >= 1
        else:
            assert codes == [200] * 8, codes
        # An agent without shared limits is served whatever the mode; readiness holds.
        assert chat(w, FREE_KEY).status_code == 200
        assert httpx.get(w.admin + "/readyz").status_code == 200
        assert w.metric("warden_fleet_fallbacks_total") >= 8
        assert w.metric("warden_fleet_redis_round_trips_total", 'result="error"') >= 1

        redis.start()
        wait_mode(w, "shared", timeout=10)
        # Back on the fleet's (fresh) bucket.
        assert chat(w, BOT_KEY).status_code == 200
        assert w.metric("warden_fleet_redis_connects_total") >= 2
        assert "fleet" in w.log_text()
    finally:
        w.stop()
        redis.close()


def refused_everywhere(wardens, key, code):
    for w in wardens:
        r = chat(w, key)
        assert r.status_code == 403 and r.headers["x-warden-error"] == code, (r.status_code,
                                                                               r.text)


def served_everywhere(wardens, key):
    for w in wardens:
        assert chat(w, key).status_code == 200


def cli(warden, *args):
    result = run_warden_cli(*args, "--config", str(warden.config_path), env=PROVIDER_ENV)
    assert result.returncode == 0, result.stderr
    return time.time(), result.stdout


def within(seconds, check):
    started = time.time()
    eventually(check, timeout=5)
    took = time.time() - started
    assert took < seconds, f"took {took:.2f} s"
    return took


def test_a_cli_revocation_reaches_every_warden_within_a_second(fleet, redis, provider):
    served_everywhere(fleet, VICTIM_KEY)
    _, said = cli(fleet[0], "revoke", "--agent", "victim", "--reason", "leaked key in a log")
    assert "revoked agent `victim`" in said
    within(1.0, lambda: refused_everywhere(fleet, VICTIM_KEY, "agent_revoked"))
    # Other agents are untouched.
    served_everywhere(fleet, FREE_KEY)
    # The refusal's audit record says the fleet revoked it, and why.
    def record(response):
        def find():
            for line in fleet[0].audit_log.read_text().splitlines():
                event = json.loads(line)
                if event.get("request_id") == response.headers["x-request-id"]:
                    return event
            raise AssertionError("no record yet")
        return eventually(find, timeout=10)
    event = record(chat(fleet[0], VICTIM_KEY))
    assert event["code"] == "agent_revoked"
    assert event["revocation"] == {"reason": "leaked key in a log", "source": "fleet"}
    # The GitOps list revokes too, and its records say so.
    event = record(chat(fleet[0], RETIRED_KEY))
    assert event["code"] == "agent_revoked"
    assert event["revocation"] == {"reason": "retired in git", "source": "policy"}
    assert "revocation" not in record(chat(fleet[0], FREE_KEY))

    # A Warden started after the revocation refuses from its first request.
    late = Warden(fleet_policy(redis, provider), env=PROVIDER_ENV)
    try:
        refused_everywhere([late], VICTIM_KEY, "agent_revoked")
        assert late.metric("warden_fleet_pushed_revocations") == 1
    finally:
        late.stop()

    _, said = cli(fleet[1], "reinstate", "--agent", "victim")
    assert "reinstated agent `victim`" in said
    within(1.0, lambda: served_everywhere(fleet, VICTIM_KEY))


def test_key_revocation_and_suspension_are_pushed_too(fleet):
    cli(fleet[2], "revoke", "--key", "victim-1")
    within(1.0, lambda: refused_everywhere(fleet, VICTIM_KEY, "credential_revoked"))
    cli(fleet[2], "reinstate", "--key", "victim-1")
    within(1.0, lambda: served_everywhere(fleet, VICTIM_KEY))

    _, said = cli(fleet[0], "suspend", "--agent", "victim", "--for", "1h", "--reason", "review")
    assert "suspended agent `victim`" in said
    within(1.0, lambda: refused_everywhere(fleet, VICTIM_KEY, "agent_suspended"))
    cli(fleet[0], "reinstate", "--agent", "victim")
    within(1.0, lambda: served_everywhere(fleet, VICTIM_KEY))


def test_a_token_revocation_is_pushed(fleet):
    minted = run_warden_cli("token", "mint", "--issuer-key", str(fleet[0].issuer_key),
                            "--agent", "victim", "--audience", "warden", "--jti", "fleet-jti-1")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    served_everywhere(fleet, token)
    cli(fleet[1], "revoke", "--token", "fleet-jti-1", "--reason", "token leaked")
    within(1.0, lambda: refused_everywhere(fleet, token, "credential_revoked"))
    # The agent's API key is not the revoked credential.
    served_everywhere(fleet, VICTIM_KEY)
    cli(fleet[1], "reinstate", "--token", "fleet-jti-1")
    within(1.0, lambda: served_everywhere(fleet, token))


def test_a_missed_announcement_is_caught_by_the_resync(fleet, redis):
    # Written straight into Redis, without the announcement: the version poll finds it.
    entry = json.dumps({"reason": "by hand", "at": int(time.time())})
    redis.command("HSET", "warden:revocations", "agent:victim", entry)
    redis.command("INCR", "warden:revocations:version")
    within(2.5, lambda: refused_everywhere(fleet, VICTIM_KEY, "agent_revoked"))
    cli(fleet[0], "reinstate", "--agent", "victim")
    within(1.0, lambda: served_everywhere(fleet, VICTIM_KEY))


def test_a_password_protected_redis(provider, tmp_path):
    password = "s3cret-redis-password"
    redis = RedisServer(["--requirepass", password])
    policy = fleet_policy(redis, provider).replace(
        f'redis: {{url: "redis://127.0.0.1:{redis.port}/0"}}',
        f'redis: {{url: "redis://127.0.0.1:{redis.port}/0", password_env: FLEET_REDIS_PASSWORD}}')
    env = {**PROVIDER_ENV, "FLEET_REDIS_PASSWORD": password}
    w = Warden(policy, env=env)
    try:
        wait_mode(w, "shared")
        assert chat(w, BOT_KEY).status_code == 200
        r = run_warden_cli("revoke", "--config", str(w.config_path), "--agent", "victim", env=env)
        assert r.returncode == 0, r.stderr
        within(1.0, lambda: refused_everywhere([w], VICTIM_KEY, "agent_revoked"))
        # Without the password: a clear error that names the variable, never a secret.
        assert "FLEET_REDIS_PASSWORD" not in os.environ
        r = run_warden_cli("reinstate", "--config", str(w.config_path), "--agent", "victim",
                           env=PROVIDER_ENV)
        assert r.returncode == 1 and "FLEET_REDIS_PASSWORD" in r.stderr, r.stderr
        wrong = {**env, "FLEET_REDIS_PASSWORD": "wrong-guess"}
        r = run_warden_cli("reinstate", "--config", str(w.config_path), "--agent", "victim",
                           env=wrong)
        assert r.returncode == 1 and "Redis" in r.stderr
        assert password not in r.stderr + r.stdout and "wrong-guess" not in r.stderr
        assert password not in w.log_text() and password not in w.metrics()
    finally:
        w.stop()
        redis.close()


def test_a_tls_redis(provider, tmp_path):
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "redis.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "redis.key"))
    redis = RedisServer(["--tls-cert-file", str(tmp_path / "redis.pem"),
                         "--tls-key-file", str(tmp_path / "redis.key"),
                         "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
                         "--tls-auth-clients", "no"], plain=False)
    policy = fleet_policy(redis, provider).replace(
        f'redis: {{url: "redis://127.0.0.1:{redis.port}/0"}}',
        f'redis: {{url: "redis://localhost:{redis.port}/0", tls: true}}')
    env = {**PROVIDER_ENV, "SSL_CERT_FILE": str(tmp_path / "ca.pem")}
    w = Warden(policy, env=env)
    try:
        wait_mode(w, "shared")
        r = run_warden_cli("revoke", "--config", str(w.config_path), "--agent", "victim", env=env)
        assert r.returncode == 0, r.stderr
        within(1.0, lambda: refused_everywhere([w], VICTIM_KEY, "agent_revoked"))
        assert chat(w, BOT_KEY).status_code == 200
        # Trusting another CA only, the CLI cannot connect.
        trustme.CA().cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
        r = run_warden_cli("reinstate", "--config", str(w.config_path), "--agent", "victim",
                           env={**PROVIDER_ENV, "SSL_CERT_FILE": str(tmp_path / "other-ca.pem")})
        assert r.returncode == 1 and "Redis" in r.stderr
    finally:
        w.stop()
        redis.close()


def test_cli_errors_are_clear(provider, tmp_path):
    no_fleet = tmp_path / "plain.yaml"
    no_fleet.write_text("version: 1\nagents: {}\n")
    r = run_warden_cli("revoke", "--config", str(no_fleet), "--agent", "x")
    assert r.returncode == 1 and "no `fleet:`" in r.stderr

    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(f"version: 1\nfleet:\n  redis: {{url: redis://127.0.0.1:{free_port()}/0}}\n")
    r = run_warden_cli("revoke", "--config", str(unreachable), "--agent", "x")
    assert r.returncode == 1 and "Redis" in r.stderr

    r = run_warden_cli("suspend", "--config", str(unreachable), "--agent", "x", "--for", "soon")
    assert r.returncode == 1 and "--for" in r.stderr

    r = run_warden_cli("revoke", "--config", str(unreachable), "--agent", "x", "--key", "y")
    assert r.returncode != 0, "exactly one of --agent, --key, --token"


@pytest.mark.parametrize("fleet_yaml, message", [
    ("redis: {url: \"redis://:hunter2@redis:6379/0\"}", "must not carry credentials"),
    ("redis: {url: \"http://redis:6379\"}", "redis:// or rediss://"),
    ("redis: {url: \"redis://r:6379\"}\n  on_unavailable: sometimes", "unknown variant `sometimes`"),
    ("redis: {url: \"redis://r:6379\", pasword_env: X}", "pasword_env"),
])
def test_check_refuses_a_bad_fleet_section(tmp_path, fleet_yaml, message):
    policy = tmp_path / "warden.yaml"
    policy.write_text(f"version: 1\nfleet:\n  {fleet_yaml}\n")
    r = run_warden_cli("check", str(policy))
    assert r.returncode == 1, r.stdout
    assert message in r.stdout
    assert "hunter2" not in r.stdout


def test_check_accepts_a_fleet_section(tmp_path):
    policy = tmp_path / "warden.yaml"
    policy.write_text("version: 1\nfleet:\n  redis: {url: \"rediss://redis.warden.svc:6379/0\", "
                      "password_env: REDIS_PASSWORD}\n  on_unavailable: deny\n")
    r = run_warden_cli("check", str(policy))
    assert r.returncode == 0, r.stdout


def test_no_request_larger_than_the_fleet_can_grant_goes_on_credit(provider):
    """A fresh lease used to admit one request of any size on credit: a 5 000 USD transfer
    under usd_per_day 10, max_tokens 50 000 under tokens_per_day 1 000 (every window again for
    per-minute limits), u64::MAX as a cap. Each is refused exactly as without a fleet."""
    redis = RedisServer()
    w = Warden(fleet_policy(redis, provider, bot_limits="{tokens_per_day: 1000, tokens_per_minute: 800}",
                            extra="""  payer:
    keys: [{id: payer-1, sha256: %s}]
    models: ["mock-*"]
    actions: {allow: ["transfer_*"], usd_per_day: 10}
""" % sha256_hex("sk-fleet-payer")), env=PROVIDER_ENV)
    try:
        wait_mode(w, "shared")
        for cap in (50_000, 2**64 - 1, 900):
            r = chat(w, BOT_KEY, max_tokens=cap)
            assert r.status_code == 400 and r.headers["x-warden-error"] == "request_exceeds_budget", (cap, r.text)
        assert chat(w, BOT_KEY, max_tokens=5).status_code == 200
        verdict = httpx.post(w.base + "/v1/verify", headers={"Authorization": "Bearer sk-fleet-payer"}, timeout=10,
                             json={"action": "transfer_funds", "parameters": {"amount": 5000}}).json()
        assert verdict["verified"] is False and [e["code"] for e in verdict["errors"]] == ["monetary_limit"]
        verdict = httpx.post(w.base + "/v1/verify", headers={"Authorization": "Bearer sk-fleet-payer"}, timeout=10,
                             json={"action": "transfer_funds", "parameters": {"amount": 4}}).json()
        assert verdict["verified"] is True
    finally:
        w.stop()
        redis.close()


MCP_KEY = "sk-fleet-mcp"
MCP_AGENT = f"""  toolbot:
    keys: [{{id: toolbot-1, sha256: {sha256_hex(MCP_KEY)}}}]
    mcp:
      crm:
        tools:
          lookup_customer: {{per_day: 5}}
          refund: {{sum_per_day: {{amount: 100}}}}
mcp_servers:
  crm: {{kind: mock}}
"""


def test_mcp_tool_quotas_are_shared(redis, provider):
    wardens = [Warden(fleet_policy(redis, provider, extra=MCP_AGENT), env=PROVIDER_ENV)
               for _ in range(3)]

    def call(i, tool, arguments):
        message = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                   "params": {"name": tool, "arguments": arguments}}
        r = httpx.post(wardens[i % 3].base + "/mcp/crm", json=message, timeout=10,
                       headers={"Authorization": f"Bearer {MCP_KEY}"})
        assert r.status_code == 200
        return r.json()

    try:
        for w in wardens:
            wait_mode(w, "shared")
        lookups = [call(i, "lookup_customer", {"id": "1"}) for i in range(15)]
        allowed = sum("result" in a for a in lookups)
        # 5 a day for the fleet (each Warden alone would allow 5: 15 together); the bound
        # allows one lease (1) and one call of credit per Warden.
        assert 5 <= allowed <= 5 + 3 * 2, lookups
        refused = [a for a in lookups if "error" in a]
        assert all(a["error"]["data"]["warden_error"] == "tool_limit_exhausted" for a in refused)
        refunds = [call(i, "refund", {"customer_id": "1", "amount": 30}) for i in range(9)]
        paid = sum("result" in a for a in refunds)
        # 100 a day: 3 refunds of 30 fit; credit is at most a lease (1/50 of 100) plus one
        # refund per Warden. Alone, each Warden would pay 3 (9 together).
        assert 3 <= paid <= (100 + 3 * (2 + 30)) // 30, refunds
        keys = redis.command("KEYS", "warden:limit:toolbot:mcp:*")
        assert "warden:limit:toolbot:mcp:count:crm/lookup_customer:" in keys, keys
        assert "warden:limit:toolbot:mcp:sum:crm/refund:amount:" in keys, keys
    finally:
        for w in wardens:
            w.stop()


DELEGATOR_KEY = "sk-fleet-delegator"
DELEGATOR = f"""  delegator:
    owner: team-fleet
    keys: [{{id: delegator-1, sha256: {sha256_hex(DELEGATOR_KEY)}}}]
    models: ["mock-*"]
"""


def test_delegated_tokens_and_teams_are_revoked_fleet_wide(redis, provider, tmp_path):
    assert run_warden_cli("keygen", "--out", str(tmp_path / "identity.key")).returncode == 0
    key = f"  identity_key_file: {tmp_path / 'identity.key'}\n"
    wardens = [Warden(fleet_policy(redis, provider, extra=DELEGATOR), env=PROVIDER_ENV, server_extra=key)
               for _ in range(2)]

    def exchange(subject, actor):
        r = httpx.post(wardens[0].base + "/v1/token", timeout=10, data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": subject,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token", "actor": actor})
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    try:
        parent = exchange(DELEGATOR_KEY, "crew")
        child = exchange(parent, "worker")
        served_everywhere(wardens, child)  # minted by one Warden, honoured by every one
        parent_jti = jwt.decode(parent, options={"verify_signature": False})["jti"]
        cli(wardens[1], "revoke", "--token", parent_jti)
        within(1.5, lambda: refused_everywhere(wardens, child, "credential_revoked"))
        served_everywhere(wardens, DELEGATOR_KEY)
        cli(wardens[1], "revoke", "--team", "team-fleet", "--reason", "reorganised")
        within(1.5, lambda: refused_everywhere(wardens, DELEGATOR_KEY, "principal_revoked"))
        served_everywhere(wardens, BOT_KEY)  # another team's agent
        cli(wardens[0], "reinstate", "--team", "team-fleet")
        within(1.5, lambda: served_everywhere(wardens, DELEGATOR_KEY))
    finally:
        for w in wardens:
            w.stop()
