"""Token budgets (reserve before forwarding, settle to the reported usage) with the real binary:
concurrent requests cannot all pass before any is charged; settling releases the difference."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import PROVIDER_ENV
from harness import Warden, audit_record, sha256_hex
from mock_provider import MockProvider

KEY = "sk-budgeted"


@pytest.fixture(scope="module")
def env():
    provider = MockProvider(slow_seconds=1.0)
    w = Warden(f"""version: 1
providers:
  openai:
    base_url: {provider.base_url}
    models: ["gpt-*", "slow-*"]
    api_key_env: TEST_OPENAI_KEY
agents:
  budgeted:
    keys: [{{id: b-1, sha256: {sha256_hex(KEY)}}}]
    models: ["gpt-4o-mini", "slow-model"]
    limits: {{tokens_per_minute: 1000}}
""", env=PROVIDER_ENV)
    w.provider = provider
    yield w
    w.stop()
    provider.close()


def body(model="gpt-4o-mini", max_tokens=200):
    return json.dumps({"model": model, "max_tokens": max_tokens, "messages": []}).encode()


def minute_used(env):
    return httpx.get(env.admin + "/v1/agents/budgeted/usage", timeout=5).json()["tokens"]["minute"]["used"]


def reservation(env, model="slow-model", max_tokens=200):
    """What Warden reserves for `body(model, max_tokens)` (its prompt estimate plus max_tokens),
    read from the usage endpoint while one such request is in flight (the slow model answers
    after 1 s); it then settles to the 18 tokens the mock reports."""
    before = minute_used(env)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(call, env, model, max_tokens)
        time.sleep(0.4)
        reserved = minute_used(env) - before
        assert running.result().status_code == 200
    assert max_tokens < reserved < max_tokens + 40, reserved
    return reserved


def call(env, model="gpt-4o-mini", max_tokens=200):
    return httpx.post(env.base + "/v1/chat/completions", timeout=10, content=body(model, max_tokens),
                      headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})


def test_concurrent_requests_cannot_all_pass_before_any_is_charged(env):
    # Each reserves 200 + its prompt's estimate: only `fits` fit in what is left of 1000; the
    # rest are refused while the first ones are still running (the slow model answers after 1 s).
    while time.time() % 60 > 50:  # stay clear of a minute boundary (a new window)
        time.sleep(0.2)
    reserved = reservation(env)
    fits = (1000 - minute_used(env)) // reserved
    assert fits >= 4, "a prompt estimate this high would refuse what fits"
    barrier = threading.Barrier(12)

    def one(_):
        barrier.wait()
        return call(env, "slow-model")
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(one, range(12)))
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) == fits and len(refused) == 12 - fits, [r.status_code for r in responses]
    for r in refused:
        assert r.headers["x-warden-error"] == "token_budget_exhausted"
        assert 1 <= int(r.headers["retry-after"]) <= 60
    lines = [l for l in env.metrics().splitlines() if l.startswith("warden_budget_rejections_total{")]
    assert any('agent="budgeted"' in l and l.endswith(f" {12 - fits}") for l in lines), lines


def test_settling_releases_what_was_not_used(env):
    # The ones above settled to the 18 tokens the mock reports each: a request reserving ~900
    # now fits, though more than that was reserved a moment ago.
    time.sleep(0.2)
    r = call(env, max_tokens=850)
    assert r.status_code == 200, f"settling did not release the reservations: {r.text}"
    # That one settled to 18 as well; 990 + its prompt bound never fits (this minute or a new
    # one): refused as such, and not to be retried.
    refused = call(env, max_tokens=990)
    assert refused.status_code == 400 and refused.headers["x-warden-error"] == "request_exceeds_budget"
    assert refused.headers["x-should-retry"] == "false"


def test_usage_endpoint_reports_use_limits_and_resets(env):
    before = httpx.get(env.admin + "/v1/agents/budgeted/usage", timeout=5).json()
    assert call(env, max_tokens=10).status_code == 200
    deadline = time.time() + 5
    while True:
        usage = httpx.get(env.admin + "/v1/agents/budgeted/usage", timeout=5).json()
        if usage["requests"]["total"] == before["requests"]["total"] + 1:
            break
        assert time.time() < deadline, usage
        time.sleep(0.05)
    assert usage["agent"] == "budgeted"
    assert usage["tokens"]["input"] == before["tokens"]["input"] + 13
    assert usage["tokens"]["output"] == before["tokens"]["output"] + 5
    minute = usage["tokens"]["minute"]
    assert minute["limit"] == 1000 and minute["used"] + minute["remaining"] == 1000
    assert minute["used"] >= 18 and 1 <= minute["reset_secs"] <= 60
    assert usage["tokens"]["day"] is None and usage["spend"] == {"day": None}
    assert httpx.get(env.admin + "/v1/agents/nobody/usage", timeout=5).status_code == 404


@pytest.fixture(scope="module")
def priced(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spend")
    provider = MockProvider()
    log = tmp / "audit.jsonl"
    w = Warden(f"""version: 1
pricing:
  gpt-4o-mini: {{input: 1, output: 2000}}
providers:
  openai:
    base_url: {provider.base_url}
    models: ["gpt-*"]
    api_key_env: TEST_OPENAI_KEY
agents:
  spender:
    keys: [{{id: s-1, sha256: {sha256_hex(KEY)}}}]
    models: ["gpt-4o-mini", "gpt-4o"]
    limits: {{usd_per_day: 0.05}}
audit:
  sink: {{file: {{path: {log}}}}}
  spool_dir: {tmp / "spool"}
""", env=PROVIDER_ENV)
    w.audit_log = log
    yield w
    w.stop()
    provider.close()


def test_spend_is_reserved_priced_and_settled(priced):
    # At $1/$2000 per million, a reply of 13 in / 5 out costs $0.010013; a request reserves
    # its prompt's estimate (a few tokens, $0.00001) and max_tokens 10 ($0.02). $0.05 a day
    # lets three through: the fourth would need $0.030039 + $0.02 and more.
    expected = [200, 200, 200, 429]
    codes, ids = [], []
    for i in range(4):
        r = httpx.post(priced.base + "/v1/chat/completions", timeout=10, content=body("gpt-4o-mini", 10),
                       headers={"Authorization": f"Bearer {KEY}", "X-Request-ID": f"spend-{i}",
                                "Content-Type": "application/json"})
        codes.append(r.status_code)
        ids.append(r.headers["x-request-id"])
        if r.status_code == 429:
            assert r.headers["x-warden-error"] == "spend_budget_exhausted"
            assert int(r.headers["retry-after"]) >= 1
        time.sleep(0.1)  # each request settles before the next reserves
    assert codes == expected, codes
    first = audit_record(priced.audit_log, ids[0])
    assert first["client_request_id"] == "spend-0"
    assert first["cost_usd"] == pytest.approx(0.010013)
    spent = [l for l in priced.metrics().splitlines() if l.startswith('warden_spend_usd_total{agent="spender"}')]
    assert spent and float(spent[0].rsplit(" ", 1)[1]) == pytest.approx(0.030039), spent


def test_an_unpriced_model_is_refused_for_an_agent_with_a_spend_limit(priced):
    r = httpx.post(priced.base + "/v1/chat/completions", timeout=10, headers={"Authorization": f"Bearer {KEY}"},
                   json={"model": "gpt-4o", "messages": []})
    assert r.status_code == 403 and r.headers["x-warden-error"] == "model_not_allowed"
    assert "pricing" in r.json()["error"]["message"]


def test_check_warns_about_unpriced_models_of_agents_with_a_spend_limit(tmp_path):
    from harness import run_warden_cli
    path = tmp_path / "p.yaml"
    path.write_text("""version: 1
pricing:
  "m-*": {input: 1, output: 2}
providers:
  m: {kind: mock, models: ["m-*", "x-*"]}
agents:
  a:
    models: ["m-1", "x-1"]
    limits: {usd_per_day: 5, tokens_per_minute: 0}
""")
    out = run_warden_cli("check", str(path))
    assert "p.yaml:8:21: warning: agent `a` has `usd_per_day` but model `x-1` has no price" in out.stdout, out.stdout
    assert "`tokens_per_minute` must be at least 1" in out.stdout and out.returncode == 1
    assert "`m-1`" not in out.stdout


def test_a_team_budget_is_shared_by_its_agents(tmp_path):
    provider = MockProvider(slow_seconds=1.0)
    w = Warden(f"""version: 1
teams:
  team-a: {{limits: {{tokens_per_minute: 500}}}}
providers:
  openai:
    base_url: {provider.base_url}
    models: ["gpt-*", "slow-*"]
    api_key_env: TEST_OPENAI_KEY
agents:
  one:
    owner: team-a
    keys: [{{id: one-1, sha256: {sha256_hex("sk-team-one")}}}]
    models: ["slow-model", "gpt-4o-mini"]
  two:
    owner: team-a
    keys: [{{id: two-1, sha256: {sha256_hex("sk-team-two")}}}]
    models: ["slow-model", "gpt-4o-mini"]
  loner:
    keys: [{{id: loner-1, sha256: {sha256_hex("sk-loner")}}}]
    models: ["slow-model"]
""", env=PROVIDER_ENV)
    try:
        while time.time() % 60 > 55:
            time.sleep(0.2)

        def post(key, model="slow-model"):
            return httpx.post(w.base + "/v1/chat/completions", timeout=10, headers={"Authorization": f"Bearer {key}"},
                              json={"model": model, "max_tokens": 300, "messages": []})
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(post, "sk-team-one")
            time.sleep(0.3)
            second = pool.submit(post, "sk-team-two")
            outside = pool.submit(post, "sk-loner")
            results = first.result(), second.result(), outside.result()
        assert [r.status_code for r in results] == [200, 429, 200], [r.text for r in results]
        assert results[1].headers["x-warden-error"] == "token_budget_exhausted"
        time.sleep(0.1)
        # The first settled to 18 tokens: the team has room again.
        assert post("sk-team-two", "gpt-4o-mini").status_code == 200
    finally:
        w.stop()
        provider.close()


def test_overshoot_under_32_concurrent_streams_is_at_most_one_reservation(tmp_path):
    # 32 streams at once against 1000 tokens a minute, each reserving max_tokens 60 plus its
    # prompt bound (one token per byte). Each really uses 21 + 3 = 24 (the mock's stream usage,
    # which Warden asks for). The minute's charge must stay within the limit plus one
    # reservation; with an output cap the reservation is an upper bound, so within the limit.
    provider = MockProvider(stream_interval=0.05)
    w = Warden(f"""version: 1
providers:
  openai:
    base_url: {provider.base_url}
    models: ["gpt-*"]
    api_key_env: TEST_OPENAI_KEY
agents:
  streamer:
    keys: [{{id: st-1, sha256: {sha256_hex("sk-streamer")}}}]
    models: ["gpt-4o-mini"]
    limits: {{tokens_per_minute: 1000}}
""", env=PROVIDER_ENV)
    try:
        while time.time() % 60 > 50:
            time.sleep(0.2)
        barrier = threading.Barrier(32)

        def stream(_):
            barrier.wait()
            with httpx.stream("POST", w.base + "/v1/chat/completions", timeout=20,
                              headers={"Authorization": "Bearer sk-streamer"},
                              json={"model": "gpt-4o-mini", "stream": True, "max_tokens": 60, "messages": []}) as r:
                body = "".join(r.iter_text())
                return r.status_code, body
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(stream, range(32)))
        passed = sum(1 for status, _ in results if status == 200)
        assert passed >= 1, passed
        assert all(status in (200, 429) for status, _ in results)
        time.sleep(0.3)
        minute = httpx.get(w.admin + "/v1/agents/streamer/usage", timeout=5).json()["tokens"]["minute"]
        one_reservation = 60 + len(json.dumps({"model": "gpt-4o-mini", "stream": True, "max_tokens": 60, "messages": []}))
        assert minute["used"] == passed * 24, minute
        assert minute["used"] <= 1000 + one_reservation
        print(f"overshoot: {passed} of 32 streams passed, {minute['used']} tokens charged against 1000")
    finally:
        w.stop()
        provider.close()


def test_budget_days_follow_the_policy_timezone(tmp_path):
    from harness import run_warden_cli
    w = Warden(f"""version: 1
timezone: Asia/Tokyo
providers:
  m: {{kind: mock, models: ["mock-*"]}}
agents:
  daily:
    keys: [{{id: d-1, sha256: {sha256_hex("sk-daily")}}}]
    models: ["mock-1"]
    limits: {{tokens_per_day: 100000}}
""")
    try:
        day = httpx.get(w.admin + "/v1/agents/daily/usage", timeout=5).json()["tokens"]["day"]
        now = time.time()
        # Midnight in Tokyo (UTC+9, no DST) is 15:00 UTC.
        until = (15 * 3600 - now % 86400) % 86400
        assert abs(day["reset_secs"] - until) <= 2, (day, until)
    finally:
        w.stop()
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\ntimezone: Mars/Olympus\n")
    out = run_warden_cli("check", str(path))
    assert out.returncode == 1 and "p.yaml:2:11: error: `timezone` must be an IANA time zone" in out.stdout, out.stdout
