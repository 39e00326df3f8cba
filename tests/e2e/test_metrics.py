"""The metrics a request leaves behind, parsed with the Prometheus client's own text parser."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import AGENT_KEY, OTHER_KEY
from harness import chat_body, post as harness_post, eventually


def families(warden):
    return {f.name: f for f in text_string_to_metric_families(warden.metrics())}


def samples(family, name, **labels):
    return [s for s in family.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def post(warden, key, model, path="/v1/chat/completions"):
    return harness_post(warden, key, chat_body(model, max_tokens=5), path=path)


def test_counts_by_agent_model_provider_and_code(warden):
    odd = 'claude-sonnet-"quoted"\\back'
    assert post(warden, AGENT_KEY, odd, "/v1/messages").status_code == 200
    assert post(warden, AGENT_KEY, odd, "/v1/messages").status_code == 200
    assert post(warden, AGENT_KEY, "gpt-4o").status_code == 200
    assert post(warden, OTHER_KEY, "gpt-4o").status_code == 403
    assert post(warden, "sk-nobody", "gpt-4o").status_code == 401
    eventually(lambda: check_counts(warden, odd))


def check_counts(warden, odd):
    f = families(warden)
    requests = f["warden_requests"]
    # The odd name is allowed by a wildcard only: no label of its own (an agent could invent
    # one per request), it shares `_other`.
    assert not samples(requests, "warden_requests_total", model=odd)
    [odd_ok] = samples(requests, "warden_requests_total", agent="app", model="_other", code="ok")
    assert odd_ok.value == 2 and odd_ok.labels["provider"] == "anthropic"
    [ok] = samples(requests, "warden_requests_total", agent="app", model="gpt-4o", code="ok")
    assert ok.value == 1 and ok.labels["provider"] == "openai"
    [denied] = samples(requests, "warden_requests_total", agent="narrow", code="model_not_allowed")
    assert denied.value == 1 and denied.labels["model"] == "_other"
    [anonymous] = samples(requests, "warden_requests_total", agent="", code="invalid_credentials")
    assert anonymous.value == 1

    tokens = f["warden_tokens"]
    [odd_in] = samples(tokens, "warden_tokens_total", agent="app", model="_other", direction="input")
    [odd_out] = samples(tokens, "warden_tokens_total", agent="app", model="_other", direction="output")
    assert (odd_in.value, odd_out.value) == (22, 8)  # the mock reports 11 in / 4 out per message

    upstream = f["warden_upstream_duration_seconds"]
    [anthropic] = samples(upstream, "warden_upstream_duration_seconds_count", provider="anthropic")
    assert anthropic.value == 2
    [openai] = samples(upstream, "warden_upstream_duration_seconds_count", provider="openai")
    assert openai.value == 1
    [total] = samples(f["warden_request_duration_seconds"], "warden_request_duration_seconds_count", code="ok")
    assert total.value == 3


def test_a_failed_provider_is_timed_too(warden):
    def openai():
        f = families(warden).get("warden_upstream_duration_seconds")
        count = samples(f, "warden_upstream_duration_seconds_count", provider="openai") if f else []
        total = samples(f, "warden_upstream_duration_seconds_sum", provider="openai") if f else []
        return (count[0].value, total[0].value) if count else (0, 0)

    count, total = openai()
    assert post(warden, AGENT_KEY, "slow-model").status_code == 504

    def timed():
        count_after, total_after = openai()
        assert count_after == count + 1
        assert total_after - total >= 1.0  # the read timeout is 1 s
    eventually(timed)
