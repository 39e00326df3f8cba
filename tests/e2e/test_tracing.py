"""OpenTelemetry traces with the real binary: every span is received by a real OTLP/HTTP receiver
that decodes the protobuf `ExportTraceServiceRequest` (trace_receiver.py). Parentage and W3C
propagation to the provider, the MCP server and services; GenAI, HTTP and Warden attributes;
refusals and upstream failures as error spans; streams ending with their usage and first
token; the audit record naming the span; sampling, reload, a dead collector, and no secrets."""

import json
import re
import socket
import time

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from conftest import AGENT_KEY, OTHER_KEY, PROVIDER_ENV, PROVIDER_KEY, standard_policy
from harness import Warden, audit_record, chat, chat_body, eventually, free_port, post, run_warden_cli, sha256_hex
from mock_provider import MockProvider
from test_mcp import MCP_KEY, SERVER_TOKEN, McpServer, client, run
from trace_receiver import TraceReceiver

VERIFY_KEY = "sk-trace-verify-key"
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
SERVER, ERROR, OK = 2, 2, 1  # SPAN_KIND_SERVER; STATUS_CODE_ERROR, STATUS_CODE_OK
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$")


def tracing_section(receiver, ratio=1.0, extra=""):
    return (f"tracing:\n  otlp: {{endpoint: \"{receiver.endpoint}\"{extra}}}\n"
            f"  sample_ratio: {ratio}\n  service_name: warden-test\n")


def upstream_context(recorded):
    """The (trace id, parent span id, flags) the upstream received in `traceparent`."""
    match = TRACEPARENT.match(recorded.header("traceparent") or "")
    assert match, f"no valid traceparent upstream: {recorded.header('traceparent')!r}"
    return match.groups()


@pytest.fixture(scope="module")
def receiver():
    r = TraceReceiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def mcp_server():
    server = McpServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def traced(provider, receiver, mcp_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tracing")
    agents = f"""  verifier:
    keys: [{{id: verify-1, sha256: {sha256_hex(VERIFY_KEY)}}}]
    actions: {{allow: [read_data]}}
    services:
      billing: {{methods: [GET], paths: ["/**"]}}
    destinations: ["127.0.0.1:*"]
  mcp-bot:
    keys: [{{id: mcp-1, sha256: {sha256_hex(MCP_KEY)}}}]
    mcp:
      crm: {{tools: {{lookup_customer: {{}}}}}}
"""
    policy = standard_policy(provider.base_url, extra_agents=agents) + f"""services:
  billing: {{base_url: "{provider.base_url}", auth: none}}
mcp_servers:
  crm: {{url: "{mcp_server.url}/mcp", api_key_env: CRM_TOKEN, auth: bearer}}
audit:
  sink: {{file: {{path: {tmp}/audit.jsonl}}}}
  spool_dir: {tmp}/spool
""" + tracing_section(receiver)
    w = Warden(policy, env={**PROVIDER_ENV, "CRM_TOKEN": SERVER_TOKEN})
    w.audit_log = tmp / "audit.jsonl"
    yield w
    w.stop()


def test_a_chat_continues_the_client_trace_and_names_warden_as_the_providers_parent(traced, provider, receiver):
    r = post(traced, AGENT_KEY, chat_body(max_tokens=50), headers={
        "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01", "tracestate": "congo=t61rcWkgMzE"})
    assert r.status_code == 200, r.text
    span = receiver.span_for(r.headers["x-request-id"])
    assert (span.trace_id, span.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    assert span.kind == SERVER and span.status_code == OK
    assert span.trace_state == "congo=t61rcWkgMzE"
    assert span.name == "chat gpt-4o-mini"
    assert span.resource["service.name"] == "warden-test"
    usage = r.json()["usage"]
    a = span.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == r.json()["model"]
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert a["http.request.method"] == "POST" and a["url.path"] == "/v1/chat/completions"
    assert a["http.response.status_code"] == 200
    assert a["warden.agent"] == "app" and a["warden.provider"] == "openai"
    assert a["warden.credential.kind"] == "api_key" and a["warden.code"] == "ok"
    assert span.end_ns >= span.start_ns > 0
    # The provider sees Warden's span as its parent, in the client's trace, sampled.
    sent = provider.last()
    assert upstream_context(sent) == (CLIENT_TRACE, span.span_id, "01")
    assert sent.header("tracestate") == "congo=t61rcWkgMzE"


def test_a_request_without_trace_context_starts_a_trace(traced, provider, receiver):
    r = chat(traced, AGENT_KEY)
    span = receiver.span_for(r.headers["x-request-id"])
    assert span.parent_span_id == "" and span.trace_id != "0" * 32
    assert upstream_context(provider.last()) == (span.trace_id, span.span_id, "01")
    assert provider.last().header("tracestate") is None


def test_an_invalid_traceparent_starts_a_new_trace_and_its_tracestate_is_dropped(traced, provider, receiver):
    r = chat(traced, AGENT_KEY, headers={"traceparent": "00-zzzz-b7ad6b7169203331-01",
                                         "tracestate": "evil=1"})
    span = receiver.span_for(r.headers["x-request-id"])
    assert span.parent_span_id == "" and span.trace_state == ""
    trace_id, parent, _ = upstream_context(provider.last())
    assert (trace_id, parent) == (span.trace_id, span.span_id)
    assert provider.last().header("tracestate") is None


def test_the_audit_record_names_the_trace_and_span(traced, receiver):
    r = chat(traced, AGENT_KEY, headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    span = receiver.span_for(r.headers["x-request-id"])
    record = audit_record(traced.audit_log, r.headers["x-request-id"])
    assert (record["trace_id"], record["span_id"]) == (span.trace_id, span.span_id)
    assert record["trace_id"] == CLIENT_TRACE
    verified = run_warden_cli("audit", "verify", str(traced.audit_log))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_refusals_are_error_spans_with_their_code(traced, receiver):
    missing = chat(traced, None)
    assert missing.status_code == 401
    span = receiver.span_for(missing.headers["x-request-id"])
    assert span.status_code == ERROR and span.status_message == "missing_credentials"
    assert span.attributes["error.type"] == "missing_credentials"
    assert span.attributes["http.response.status_code"] == 401
    assert span.attributes["warden.decision"] == "deny"
    assert "warden.agent" not in span.attributes
    assert span.name == "chat"

    refused = chat(traced, OTHER_KEY, model="gpt-4o")
    assert refused.status_code == 403
    span = receiver.span_for(refused.headers["x-request-id"])
    assert span.status_code == ERROR and span.attributes["error.type"] == "model_not_allowed"
    assert span.attributes["warden.agent"] == "narrow"
    assert span.attributes["gen_ai.request.model"] == "gpt-4o"
    assert "gen_ai.usage.input_tokens" not in span.attributes


def test_a_provider_error_is_an_error_span(traced, receiver):
    r = chat(traced, AGENT_KEY, model="error-model")
    assert r.status_code >= 500
    span = receiver.span_for(r.headers["x-request-id"])
    assert span.status_code == ERROR
    assert span.attributes["error.type"] == "upstream_5xx"
    assert span.attributes["http.response.status_code"] == r.status_code


def test_a_dead_provider_is_an_upstream_unavailable_error_span(receiver):
    dead = Warden(f"""version: 1
providers:
  gone: {{base_url: "http://127.0.0.1:{free_port()}/v1", models: ["gpt-*"], auth: none}}
agents:
  app: {{keys: [{{id: k, sha256: {sha256_hex(AGENT_KEY)}}}], models: ["gpt-*"]}}
""" + tracing_section(receiver))
    try:
        r = chat(dead, AGENT_KEY)
        assert r.status_code == 502
        span = receiver.span_for(r.headers["x-request-id"])
        assert span.status_code == ERROR and span.status_message == "upstream_unavailable"
        assert span.attributes["warden.provider"] == "gone"
    finally:
        dead.stop()


def test_a_stream_span_ends_with_the_stream_and_carries_usage_and_first_token(traced, receiver):
    body = chat_body(stream=True, stream_options={"include_usage": True})
    with httpx.stream("POST", traced.base + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {AGENT_KEY}"}, timeout=10) as r:
        request_id = r.headers["x-request-id"]
        lines = [line for line in r.iter_lines() if line.startswith("data: {")]
    usage = [json.loads(line[6:]) for line in lines if '"usage"' in line][-1]["usage"]
    span = receiver.span_for(request_id)
    a = span.attributes
    assert a["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert a["gen_ai.response.model"] == "gpt-4o-mini"
    duration = (span.end_ns - span.start_ns) / 1e9
    # The mock writes its events 0.15 s apart: the span lasts the whole stream.
    assert duration >= 0.15 * (len(lines) - 1)
    first = a["gen_ai.server.time_to_first_token"]
    assert 0 < first < duration
    event = span.events["first_token"]
    assert span.start_ns < event.time_unix_nano < span.end_ns


def test_an_anthropic_call_is_named_for_its_provider(traced, receiver):
    r = post(traced, AGENT_KEY, {"model": "claude-sonnet-4", "max_tokens": 64,
                                 "messages": [{"role": "user", "content": "hi"}]},
             path="/v1/messages")
    assert r.status_code == 200, r.text
    span = receiver.span_for(r.headers["x-request-id"])
    a = span.attributes
    assert span.name == "chat claude-sonnet-4"
    assert a["gen_ai.provider.name"] == "anthropic" and a["warden.provider"] == "anthropic"
    assert a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.usage.output_tokens"] == r.json()["usage"]["output_tokens"]


def test_an_mcp_tool_call_span_names_the_tool_and_the_server_gets_the_context(traced, receiver, mcp_server):
    async def call():
        async with client(traced, key=MCP_KEY) as c:
            return await c.call_tool("lookup_customer", {"id": "c-42"})

    result = run(call())
    assert not result.is_error
    span = receiver.wait_for(lambda s: s.attributes.get("gen_ai.tool.name") == "lookup_customer")
    a = span.attributes
    assert span.name == "tools/call lookup_customer" and span.status_code == OK
    assert a["gen_ai.operation.name"] == "execute_tool" and a["mcp.method.name"] == "tools/call"
    assert a["warden.mcp.server"] == "crm" and a["warden.agent"] == "mcp-bot"
    calls = [r for r in mcp_server.requests() if '"tools/call"' in r["body"]]
    trace_id, parent, _ = TRACEPARENT.match(calls[-1]["headers"]["traceparent"]).groups()
    assert (trace_id, parent) == (span.trace_id, span.span_id)

    async def refused():
        async with client(traced, key=MCP_KEY) as c:
            with pytest.raises(MCPError):
                await c.call_tool("delete_customer-x7", {"id": "c-42"})

    run(refused())
    span = receiver.wait_for(lambda s: s.attributes.get("gen_ai.tool.name") == "delete_customer-x7")
    assert span.name == "tools/call", "a tool the policy does not name is no span name"
    assert span.status_code == ERROR and span.attributes["error.type"] == "tool_not_allowed"


def test_a_service_call_and_a_verification_have_their_spans(traced, provider, receiver):
    r = httpx.get(traced.base + "/svc/billing/v1/models", headers={"Authorization": f"Bearer {VERIFY_KEY}"})
    span = receiver.span_for(r.headers["x-request-id"])
    assert span.name == "GET /svc/billing" and span.attributes["warden.service"] == "billing"
    trace_id, parent, _ = upstream_context(provider.last())
    assert (trace_id, parent) == (span.trace_id, span.span_id)

    r = post(traced, VERIFY_KEY, {"action": "read_data"}, path="/v1/verify")
    assert r.status_code == 200 and r.json()["verified"] is True
    span = receiver.span_for(r.headers["x-request-id"])
    assert span.name == "POST /v1/verify"
    assert span.attributes["warden.action"] == "read_data"
    assert span.attributes["warden.action.verified"] is True


def connect(warden, target, key):
    sock = socket.create_connection(("127.0.0.1", warden.port), timeout=5)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
                 f"Proxy-Authorization: Bearer {key}\r\n\r\n".encode())
    head = sock.recv(4096).decode()
    return head, sock


def test_connect_tunnels_have_spans(traced, receiver):
    head, sock = connect(traced, "10.1.2.3:22", AGENT_KEY)
    sock.close()
    assert " 403 " in head
    span = receiver.wait_for(lambda s: s.name == "CONNECT" and s.attributes.get("warden.agent") == "app")
    assert span.status_code == ERROR and span.attributes["error.type"] == "destination_not_allowed"
    assert span.attributes["warden.destination"] == "10.1.2.3:22"

    echo = socket.create_server(("127.0.0.1", 0))
    port = echo.getsockname()[1]
    head, sock = connect(traced, f"127.0.0.1:{port}", VERIFY_KEY)
    assert " 200 " in head
    peer, _ = echo.accept()
    sock.sendall(b"ping")
    assert peer.recv(4) == b"ping"
    sock.close()
    peer.close()
    echo.close()
    span = receiver.wait_for(lambda s: s.name == "CONNECT" and s.attributes.get("warden.agent") == "verifier")
    assert span.status_code == OK and span.attributes["warden.tunnel.bytes_up"] == 4


def test_no_secret_or_prompt_reaches_a_span(traced, receiver):
    prompt = "my-very-private-prompt-text-4711"
    r = post(traced, AGENT_KEY, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
    assert r.status_code == 200
    receiver.span_for(r.headers["x-request-id"])
    for span in receiver.received():
        text = json.dumps({**span.attributes, **span.resource}, default=str) + span.name
        for secret in (AGENT_KEY, PROVIDER_KEY, VERIFY_KEY, MCP_KEY, SERVER_TOKEN, prompt):
            assert secret not in text, f"{secret!r} in span {span.name}"


def test_spans_are_counted_as_exported(traced, receiver):
    chat(traced, AGENT_KEY)
    eventually(lambda: assert_at_least(traced.metric("warden_trace_spans_exported_total"), 1))
    assert traced.metric("warden_trace_spans_dropped_total", 'reason="export_failed"') == 0
    assert len({post for post in receiver.posts}) == 1 and receiver.posts[0] == "application/x-protobuf"


def assert_at_least(value, least):
    assert value is not None and value >= least, value


def test_sampling_follows_the_parent_and_the_ratio_and_reloads(provider):
    receiver = TraceReceiver()
    policy = standard_policy(provider.base_url)
    w = Warden(policy + tracing_section(receiver, ratio=0.0), env=PROVIDER_ENV)
    try:
        unsampled = chat(w, AGENT_KEY)
        _, parent, flags = upstream_context(provider.last())
        assert flags == "00", "a new trace at ratio 0 is not sampled, and the provider is told"
        sampled_parent = chat(w, AGENT_KEY, headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
        span = receiver.span_for(sampled_parent.headers["x-request-id"])
        assert span.parent_span_id == CLIENT_SPAN, "a sampled parent is followed whatever the ratio"
        assert upstream_context(provider.last())[2] == "01"
        time.sleep(1.5)
        ids = {s.attributes.get("warden.request_id") for s in receiver.received()}
        assert unsampled.headers["x-request-id"] not in ids

        w.update({"warden.yaml": policy + tracing_section(receiver, ratio=1.0)})

        def traced_now():
            r = chat(w, AGENT_KEY, headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"})
            assert upstream_context(provider.last())[2] == "00", "an unsampled parent is followed"
            r = chat(w, AGENT_KEY)
            assert upstream_context(provider.last())[2] == "01"
            return r
        r = eventually(traced_now, timeout=5)
        receiver.span_for(r.headers["x-request-id"])
        time.sleep(1.5)
        parents = [s.parent_span_id for s in receiver.received()]
        assert parents.count(CLIENT_SPAN) == 1, "the unsampled parent's child was not exported"
    finally:
        w.stop()
        receiver.close()


def test_a_dead_or_silent_collector_costs_requests_nothing_and_is_counted(provider):
    receiver = TraceReceiver()
    receiver.up = False
    w = Warden(standard_policy(provider.base_url) + tracing_section(receiver, extra=", timeout_secs: 0.5"),
               env=PROVIDER_ENV)
    try:
        for _ in range(5):
            started = time.time()
            assert chat(w, AGENT_KEY).status_code == 200
            assert time.time() - started < 1
        eventually(lambda: assert_at_least(
            w.metric("warden_trace_spans_dropped_total", 'reason="export_failed"'), 5), timeout=15)
        receiver.up, receiver.hang = True, True
        for _ in range(5):
            started = time.time()
            assert chat(w, AGENT_KEY).status_code == 200
            assert time.time() - started < 1, "a collector that never answers holds no request"
        receiver.hang = False
        r = chat(w, AGENT_KEY)
        receiver.span_for(r.headers["x-request-id"], timeout=15)
        assert w.metric("warden_trace_spans_exported_total") >= 1
    finally:
        w.stop()
        receiver.close()


def test_without_tracing_the_client_trace_context_passes_untouched(warden, provider):
    traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    chat(warden, AGENT_KEY, headers={"traceparent": traceparent, "tracestate": "congo=1"})
    assert provider.last().header("traceparent") == traceparent
    assert provider.last().header("tracestate") == "congo=1"


@pytest.mark.parametrize("section, message", [
    ("tracing: {otlp: {endpoint: \"otel:4318\"}}", "`endpoint` must be an http:// or https:// URL"),
    ("tracing: {otlp: {endpoint: \"http://otel:4318\"}, sample_ratio: 1.5}", "`sample_ratio` must be from 0 to 1"),
    ("tracing: {otlp: {endpoint: \"http://otel:4318\"}, service_name: \"\"}", "`service_name` must not be empty"),
    ("tracing: {otlp: {endpoint: \"http://otel:4318\"}, sampled: 1}", "unknown field `sampled`"),
])
def test_check_refuses_a_bad_tracing_section_with_its_position(tmp_path, section, message):
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\n" + section + "\n")
    out = run_warden_cli("check", str(path))
    assert out.returncode == 1
    assert message in out.stdout + out.stderr
    assert f"{path}:2:" in out.stdout + out.stderr


def test_a_delegated_call_names_its_actors_team_and_user(tmp_path, receiver):
    planner_key = "sk-trace-planner-key"
    assert run_warden_cli("keygen", "--out", str(tmp_path / "identity.key")).returncode == 0
    w = Warden(f"""version: 1
providers:
  local: {{kind: mock, models: ["mock-*"]}}
delegation: {{max_depth: 3, max_ttl: 10m}}
agents:
  planner:
    owner: team-research
    keys: [{{id: planner-1, sha256: {sha256_hex(planner_key)}}}]
    models: ["mock-*"]
""" + tracing_section(receiver), server_extra=f"  identity_key_file: {tmp_path / 'identity.key'}\n")
    try:
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": planner_key,
                "subject_token_type": "urn:ietf:params:oauth:token-type:access_token", "actor": "researcher"}
        exchanged = httpx.post(w.base + "/v1/token", data=form, timeout=10)
        assert exchanged.status_code == 200, exchanged.text
        span = receiver.span_for(exchanged.headers["x-request-id"])
        assert span.name == "POST /v1/token" and span.status_code == OK
        delegated = exchanged.json()["access_token"]
        r = post(w, delegated, {"model": "mock-small", "user": "alice",
                                "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        a = receiver.span_for(r.headers["x-request-id"]).attributes
        assert a["warden.actors"] == ["researcher"]
        assert a["warden.agent"] == "planner" and a["warden.team"] == "team-research"
        assert a["warden.user"] == "alice" and a["warden.credential.kind"] == "jwt"
        assert a["gen_ai.provider.name"] == "openai" and a["warden.provider"] == "local"
        assert delegated not in json.dumps(a)
    finally:
        w.stop()
