"""An agent's `schedule`: outside its windows every request is refused with 403
`outside_schedule` (an LLM call, a model listing, a CONNECT); inside them it is served."""

import datetime

import httpx
import openai
import pytest

from conftest import PROVIDER_ENV, sha256_hex, standard_policy
from harness import Warden, run_warden_cli

NIGHT_KEY = "sk-night-shift-key"
ALWAYS_KEY = "sk-always-on-key"
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@pytest.fixture(scope="module")
def scheduled(provider):
    # `night` may act only on the day after tomorrow (in UTC): never while this test runs.
    later = DAYS[(datetime.datetime.now(datetime.timezone.utc).weekday() + 2) % 7]
    extra = f"""  night:
    keys: [{{id: night-1, sha256: {sha256_hex(NIGHT_KEY)}}}]
    models: ["gpt-*"]
    schedule: {{timezone: UTC, windows: ["{later} 00:00-24:00"]}}
  always:
    keys: [{{id: always-1, sha256: {sha256_hex(ALWAYS_KEY)}}}]
    models: ["gpt-*"]
    schedule: {{timezone: Pacific/Kiritimati, windows: ["* 00:00-24:00"]}}
"""
    w = Warden(standard_policy(provider.base_url, extra_agents=extra), env=PROVIDER_ENV)
    yield w
    w.stop()


def test_outside_the_schedule_everything_is_refused(scheduled):
    client = openai.OpenAI(base_url=scheduled.base + "/v1", api_key=NIGHT_KEY, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert err.value.code == "outside_schedule"
    models = httpx.get(scheduled.base + "/v1/models", headers={"Authorization": f"Bearer {NIGHT_KEY}"})
    assert models.status_code == 403 and models.headers["x-warden-error"] == "outside_schedule"
    assert scheduled.metric("warden_requests_total", 'agent="night",code="outside_schedule",model="",provider=""') == 2


def test_inside_the_schedule_it_is_served(scheduled):
    client = openai.OpenAI(base_url=scheduled.base + "/v1", api_key=ALWAYS_KEY, max_retries=0)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "hello from mock"


def test_check_reports_bad_schedules(tmp_path):
    bad = standard_policy("http://127.0.0.1:9/v1", extra_agents="""  odd:
    models: ["gpt-*"]
    schedule: {timezone: Mars/Olympus, windows: ["Mon-Fri 08:00-20:00"]}
  odder:
    models: ["gpt-*"]
    schedule: {windows: ["Weekdays 8-20", "Mon 10:00-10:00"]}
  empty:
    models: ["gpt-*"]
    schedule: {windows: []}
""")
    (tmp_path / "p.yaml").write_text(bad)
    out = run_warden_cli("check", str(tmp_path / "p.yaml"))
    assert out.returncode == 1
    assert "unknown time zone `Mars/Olympus`" in out.stdout
    assert "bad schedule window `Weekdays 8-20`" in out.stdout
    assert "bad schedule window `Mon 10:00-10:00`" in out.stdout
    assert "a schedule needs at least one window" in out.stdout
