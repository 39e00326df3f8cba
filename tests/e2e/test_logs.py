"""Process logs: `WARDEN_LOG_FORMAT=json` makes every line a JSON object; every request leaves
one line with its request id and agent; no secret is ever logged; `WARDEN_LOG` sets the level."""

import json
import signal

import httpx

from conftest import AGENT_KEY, ANTHROPIC_KEY, PROVIDER_ENV, PROVIDER_KEY, standard_policy
from harness import Warden, eventually

BODY = {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def access_lines(warden):
    lines = [json.loads(line) for line in warden.log_text().splitlines() if line.strip()]
    return [line for line in lines if line["target"] == "warden::access"]


def test_json_lines_carry_request_id_and_agent_and_no_secret(provider):
    warden = Warden(standard_policy(provider.base_url), env={**PROVIDER_ENV, "WARDEN_LOG_FORMAT": "json"})
    try:
        ok = httpx.post(warden.base + "/v1/chat/completions", json=BODY,
                        headers={"Authorization": f"Bearer {AGENT_KEY}"})
        assert ok.status_code == 200
        refused = httpx.post(warden.base + "/v1/chat/completions", json=BODY,
                             headers={"Authorization": "Bearer sk-guessed-secret-value"})
        assert refused.status_code == 401

        def logged():
            by_id = {line["request_id"]: line for line in access_lines(warden)}
            assert ok.headers["x-request-id"] in by_id and refused.headers["x-request-id"] in by_id
            return by_id
        by_id = eventually(logged)
        line = by_id[ok.headers["x-request-id"]]
        assert line["level"] == "INFO" and line["message"] == "request"
        assert (line["agent"], line["method"], line["path"]) == ("app", "POST", "/v1/chat/completions")
        assert (line["model"], line["provider"], line["code"], line["status"]) == ("gpt-4o", "openai", "ok", 200)
        assert line["latency_ms"] > 0 and line["input_tokens"] > 0
        denied = by_id[refused.headers["x-request-id"]]
        assert (denied["agent"], denied["code"], denied["status"]) == ("", "invalid_credentials", 401)
        text = warden.log_text()
        for secret in (AGENT_KEY, PROVIDER_KEY, ANTHROPIC_KEY, "sk-guessed-secret-value"):
            assert secret not in text
        # Every line, start-up and a graceful shutdown included, is one JSON object.
        warden.proc.send_signal(signal.SIGTERM)
        warden.proc.wait(timeout=30)
        lines = warden.log_text().splitlines()
        assert len(lines) > 5 and any("exited" in line for line in lines)
        for raw in lines:
            assert isinstance(json.loads(raw), dict), raw
    finally:
        warden.stop()


def test_level_comes_from_the_environment(provider):
    quiet = Warden(standard_policy(provider.base_url), env={**PROVIDER_ENV, "WARDEN_LOG": "warn"})
    text = Warden(standard_policy(provider.base_url), env=PROVIDER_ENV)
    try:
        for w in (quiet, text):
            r = httpx.post(w.base + "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {AGENT_KEY}"})
            assert r.status_code == 200
        request_id = r.headers["x-request-id"]
        def logged():
            lines = [line for line in text.log_text().splitlines() if f"request_id={request_id}" in line]
            assert len(lines) == 1
            [line] = lines
            assert "agent=app" in line and "code=ok" in line
        eventually(logged)
        assert "request_id=" not in quiet.log_text()
    finally:
        quiet.stop()
        text.stop()
