"""POST /v1/verify with the Python `requests` library: allowed and denied actions, monetary and
count limits (reserved on verify), currencies, schedule and status, malformed bodies, the audit
record of every verification, and the day's counts surviving a reload."""

import datetime
import json

import pytest
import requests

from conftest import PROVIDER_ENV, SUSPENDED_KEY, sha256_hex, standard_policy
from harness import Warden, audit_record

PAYER_KEY = "sk-payments-agent-key"
MAILER_KEY = "sk-email-agent-key"
NIGHT_KEY = "sk-night-agent-key"
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def agents():
    later = DAYS[(datetime.datetime.now(datetime.timezone.utc).weekday() + 2) % 7]
    return f"""  payer:
    keys: [{{id: payer-1, sha256: {sha256_hex(PAYER_KEY)}}}]
    models: ["gpt-*"]
    actions:
      allow: [read_data, "transfer_*"]
      deny: [transfer_to_unknown]
      usd_per_action: 100
      usd_per_day: 150
      currencies: {{EUR: 1.5}}
  mailer:
    keys: [{{id: mailer-1, sha256: {sha256_hex(MAILER_KEY)}}}]
    models: ["gpt-*"]
    actions:
      allow: [send_email]
      per_day: {{send_email: 2}}
  night:
    keys: [{{id: night-1, sha256: {sha256_hex(NIGHT_KEY)}}}]
    models: ["gpt-*"]
    actions: {{allow: ["*"]}}
    schedule: {{windows: ["{later} 00:00-24:00"]}}
"""


@pytest.fixture(scope="module")
def warden(provider, tmp_path_factory):
    audit = tmp_path_factory.mktemp("verify-audit")
    policy = standard_policy(provider.base_url, extra_agents=agents()) + f"""audit:
  sink: {{file: {{path: {audit}/audit.jsonl}}}}
  spool_dir: {audit}/spool
"""
    w = Warden(policy, env=PROVIDER_ENV)
    w.audit_log = audit / "audit.jsonl"
    w.policy_text = policy
    yield w
    w.stop()


def verify(warden, key, body, raw=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if raw is not None:
        return requests.post(warden.base + "/v1/verify", data=raw, headers=headers, timeout=10)
    return requests.post(warden.base + "/v1/verify", json=body, headers=headers, timeout=10)


def codes(answer):
    return [e["code"] for e in answer["errors"]]


def test_allowed_action_is_verified_and_reserves_the_amount(warden):
    r = verify(warden, PAYER_KEY, {"action": "transfer_funds", "target": "acct-42",
                                   "parameters": {"amount": 45.0, "currency": "USD"}})
    assert r.status_code == 200
    answer = r.json()
    assert answer["verified"] is True and answer["agent"] == "payer" and answer["action"] == "transfer_funds"
    assert answer["errors"] == [] and answer["remaining"]["usd_today"] == 105.0
    record = audit_record(warden.audit_log, r.headers["x-request-id"])
    assert record["type"] == "action" and record["action"] == "transfer_funds" and record["verified"] is True
    assert record["target"] == "acct-42" and record["amount_usd"] == 45.0 and record["errors"] == []
    # A currency the policy values: 40 EUR is 60 USD of the 105 left.
    eur = verify(warden, PAYER_KEY, {"action": "transfer_funds", "parameters": {"amount": 40, "currency": "EUR"}})
    assert eur.json()["verified"] is True and eur.json()["remaining"]["usd_today"] == 45.0
    # The day's limit now refuses 50 USD; nothing is taken by a refusal.
    over = verify(warden, PAYER_KEY, {"action": "transfer_funds", "parameters": {"amount": 50}}).json()
    assert over["verified"] is False and codes(over) == ["monetary_limit"] and over["remaining"]["usd_today"] == 45.0


def test_refusals_name_every_reason(warden):
    denied = verify(warden, PAYER_KEY, {"action": "transfer_to_unknown", "parameters": {"amount": 500}}).json()
    assert denied["verified"] is False and codes(denied) == ["action_denied", "monetary_limit"]
    unlisted = verify(warden, PAYER_KEY, {"action": "delete_account"}).json()
    assert codes(unlisted) == ["action_not_allowed"]
    currency = verify(warden, PAYER_KEY, {"action": "read_data", "parameters": {"amount": 1, "currency": "JPY"}}).json()
    assert codes(currency) == ["monetary_limit"] and "JPY" in currency["errors"][0]["message"]
    nothing = verify(warden, MAILER_KEY, {"action": "transfer_funds"}).json()
    assert codes(nothing) == ["action_not_allowed"]


def test_daily_count_and_its_survival_across_a_reload(warden):
    for left in (1, 0):
        ok = verify(warden, MAILER_KEY, {"action": "send_email", "target": "bob@example.com"}).json()
        assert ok["verified"] is True and ok["remaining"]["action_today"] == left
    warden.update({"warden.yaml": warden.policy_text + "# reloaded\n"})
    import time
    deadline = time.time() + 5
    while warden.metric("warden_config_reloads_total", 'result="ok"') < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert warden.metric("warden_config_reloads_total", 'result="ok"') >= 1
    again = verify(warden, MAILER_KEY, {"action": "send_email"}).json()
    assert again["verified"] is False and codes(again) == ["action_limit"]
    assert 0 < again["remaining"]["resets_in_secs"] <= 86400


def test_status_and_schedule_are_part_of_the_verdict(warden):
    night = verify(warden, NIGHT_KEY, {"action": "read_data"}).json()
    assert night["verified"] is False and codes(night) == ["outside_schedule"]
    frozen = verify(warden, SUSPENDED_KEY, {"action": "read_data"}).json()
    assert frozen["verified"] is False and codes(frozen)[0] == "agent_suspended"


def test_bad_requests_get_the_error_shape(warden):
    for raw in [b"{", b'{"target": "x"}', b'{"action": ""}', b'{"action": "a", "parameters": {"amount": -1}}',
                b'{"action": "a", "parameters": {"amount": "ten"}}', b'\xff\xfe',
                b'{"action": "a", "action": "b"}', b'{"action": "a", "parameters": {"amount": 1, "amount": 900}}']:
        r = verify(warden, PAYER_KEY, None, raw=raw)
        assert r.status_code == 400, raw
        assert r.json()["error"]["code"] == "invalid_json" and r.headers["x-warden-error"] == "invalid_json"
    missing = verify(warden, None, {"action": "read_data"})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_credentials"
    wrong_method = requests.get(warden.base + "/v1/verify", headers={"Authorization": f"Bearer {PAYER_KEY}"})
    assert wrong_method.status_code == 403


def test_action_records_keep_the_chain_intact(warden):
    """Action records carry extra fields; the verifier recomputes every hash from the written
    line, so a field out of canonical order would show as tampering."""
    from harness import eventually, run_warden_cli
    verify(warden, PAYER_KEY, {"action": "read_data", "target": "t"})

    def intact():
        out = run_warden_cli("audit", "verify", str(warden.audit_log))
        assert out.returncode == 0, out.stdout + out.stderr
        assert '"type":"action"' in warden.audit_log.read_text()
    eventually(intact, timeout=10)
