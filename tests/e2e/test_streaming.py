"""SSE passes through chunk by chunk (not buffered whole), and usage is metered from streams."""

import time

import httpx

from conftest import AGENT_KEY
from harness import eventually
from prometheus_client.parser import text_string_to_metric_families


def token_counts(warden, agent, model):
    counts = {}
    for family in text_string_to_metric_families(warden.metrics()):
        if family.name == "warden_tokens":
            for s in family.samples:
                if s.name == "warden_tokens_total" and s.labels["agent"] == agent and s.labels["model"] == model:
                    counts[s.labels["direction"]] = s.value
    return counts


def stream_events(warden, path, body, headers):
    arrivals = []
    with httpx.stream("POST", warden.base + path, json=body, headers=headers, timeout=20) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                arrivals.append((time.monotonic(), line))
    return arrivals


def test_openai_stream_arrives_incrementally_and_is_metered(warden, provider):
    before = token_counts(warden, "app", "gpt-4o")
    body = {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}, "messages": []}
    arrivals = stream_events(warden, "/v1/chat/completions", body, {"Authorization": f"Bearer {AGENT_KEY}"})
    assert arrivals[-1][1] == "data: [DONE]"
    assert len(arrivals) == 7
    gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:-1])]
    # The provider sends one event every 150 ms; a buffering proxy would deliver them together.
    assert min(gaps) > 0.08, gaps
    assert arrivals[-2][0] - arrivals[0][0] > 0.6
    def metered():
        after = token_counts(warden, "app", "gpt-4o")
        assert after.get("input", 0) - before.get("input", 0) == 21
        assert after.get("output", 0) - before.get("output", 0) == 3
    eventually(metered)


def test_anthropic_stream_is_metered(warden):
    # `claude-sonnet-test` is allowed by a wildcard only: its label is the shared `_other`.
    before = token_counts(warden, "app", "_other")
    body = {"model": "claude-sonnet-test", "stream": True, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    arrivals = stream_events(warden, "/v1/messages", body, {"x-api-key": AGENT_KEY, "anthropic-version": "2023-06-01"})
    assert len(arrivals) == 7
    def metered():
        after = token_counts(warden, "app", "_other")
        assert after.get("input", 0) - before.get("input", 0) == 17
        assert after.get("output", 0) - before.get("output", 0) == 6
    eventually(metered)


def test_json_usage_is_metered(warden):
    before = token_counts(warden, "app", "gpt-4o-mini")
    r = httpx.post(warden.base + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []},
                   headers={"Authorization": f"Bearer {AGENT_KEY}"}, timeout=10)
    assert r.status_code == 200
    def metered():
        after = token_counts(warden, "app", "gpt-4o-mini")
        assert after.get("input", 0) - before.get("input", 0) == 13
        assert after.get("output", 0) - before.get("output", 0) == 5
    eventually(metered)
