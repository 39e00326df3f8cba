"""The MCP gateway, driven by the official MCP Python SDK (`mcp` 2.x) in both protocol eras —
the handshake (`initialize`, sessions, SSE or JSON answers, the GET stream, DELETE) and the
stateless 2026-07-28 revision (`server/discover`, `Mcp-Method`/`Mcp-Name`) — against a real
MCP server built with the same SDK (mcp_server.py), through the real binary. Plus the MCP
TypeScript SDK for one happy path, and raw HTTP for the wire tricks no SDK would send."""

import asyncio
import datetime
import hashlib
import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jwt
import pytest
import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from conftest import AGENT_KEY, OTHER_KEY
from harness import WARDEN_BIN, Warden, audit_record, free_port, run_warden_cli, sha256_hex

HERE = Path(__file__).parent
MCP_KEY = "sk-mcp-agent-key"
QUOTA_KEY = "sk-mcp-quota-key"
TIGHT_KEY = "sk-mcp-one-at-a-time"
SERVER_TOKEN = "mcp-server-own-secret"


def wait_for(url, timeout=20):
    """Until `url` answers 200 (a server starting up)."""
    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.05)


class McpServer:
    """mcp_server.py in a subprocess (SSE answers, or JSON with `json_answers`)."""

    def __init__(self, json_answers=False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, str(HERE / "mcp_server.py"), "--port", str(self.port), "--token", SERVER_TOKEN]
        self.proc = subprocess.Popen(args + (["--json"] if json_answers else []),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.url + "/_seen")

    def seen(self):
        return httpx.get(self.url + "/_seen", timeout=5).json()

    def requests(self):
        return self.seen()["requests"]

    def close(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def servers():
    sse, json_server = McpServer(), McpServer(json_answers=True)
    yield sse, json_server
    sse.close()
    json_server.close()


@pytest.fixture(scope="module")
def warden(servers, tmp_path_factory):
    sse, json_server = servers
    tmp = tmp_path_factory.mktemp("mcp")
    for name in ["identity", "issuer", "signer"]:
        assert run_warden_cli("keygen", "--out", str(tmp / f"{name}.key")).returncode == 0
    issuer, signer = [(tmp / f"{name}.key.pub").read_text().strip() for name in ["issuer", "signer"]]
    crm_tools = """          lookup_customer: {}
          send_email: {arguments: {to: {pattern: "*@example.com"}, body: {max_length: 20}}}
          refund: {arguments: {amount: {min: 1, max: 100}}, sum_per_day: {amount: 150}}
          set_tier: {arguments: {tier: {one_of: [gold, silver]}}}
          "fail*": {}"""
    policy = f"""version: 1
mcp_servers:
  crm: {{url: "{sse.url}/mcp", api_key_env: CRM_TOKEN, auth: bearer, identity_header: true}}
  crm-json: {{url: "{json_server.url}/mcp", api_key_file: {tmp / "token"}}}
  paged: {{url: "{sse.url}/paged", api_key_env: CRM_TOKEN}}
  unused: {{url: "{sse.url}/mcp", auth: none}}
issuers:
  corp: {{ed25519: "{issuer}", audience: warden}}
agents:
  mcp-bot:
    keys: [{{id: mcp-1, sha256: {sha256_hex(MCP_KEY)}}}]
    public_keys: [{{id: mcp-sig-1, ed25519: "{signer}"}}]
    mcp:
      crm:
        tools:
{crm_tools}
        resources: ["crm://customers/*"]
        prompts: ["greet*"]
      crm-json:
        tools:
{crm_tools}
      paged:
        tools: {{lookup_customer: {{}}, send_email: {{}}}}
  quota-bot:
    keys: [{{id: quota-1, sha256: {sha256_hex(QUOTA_KEY)}}}]
    mcp:
      crm:
        tools:
          lookup_customer: {{per_day: 5}}
          refund: {{sum_per_day: {{amount: 100}}}}
  tight-bot:
    keys: [{{id: tight-1, sha256: {sha256_hex(TIGHT_KEY)}}}]
    limits: {{max_concurrent: 1}}
    mcp:
      crm: {{tools: {{lookup_customer: {{}}}}}}
  other-bot:
    keys: [{{id: other-1, sha256: {sha256_hex(OTHER_KEY)}}}]
    mcp:
      crm: {{tools: {{lookup_customer: {{}}}}}}
  no-mcp:
    keys: [{{id: plain-1, sha256: {sha256_hex(AGENT_KEY)}}}]
audit:
  sink: {{file: {{path: {tmp}/audit.jsonl}}}}
  spool_dir: {tmp}/spool
"""
    (tmp / "token").write_text(SERVER_TOKEN + "\n")
    w = Warden(policy, env={"CRM_TOKEN": SERVER_TOKEN},
               server_extra=f"  identity_key_file: {tmp / 'identity.key'}\n")
    w.audit_log = tmp / "audit.jsonl"
    w.keys = tmp
    yield w
    w.stop()


def run(coroutine):
    return asyncio.run(coroutine)


def client(warden, server="crm", key=MCP_KEY, mode="legacy"):
    """An SDK client of `server` through Warden, authenticated with the agent `key`."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    return Client(streamable_http_client(f"{warden.base}/mcp/{server}", http_client=http), mode=mode)


ERAS = ["legacy", "auto"]


async def refusal(c, tool, arguments):
    with pytest.raises(MCPError) as refused:
        await c.call_tool(tool, arguments)
    return refused.value.error


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("server", ["crm", "crm-json"])
def test_the_agent_sees_only_its_tools_and_calls_them(warden, servers, mode, server):
    async def scenario():
        async with client(warden, server, mode=mode) as c:
            if mode == "auto":
                assert c.session.discover_result is not None, "the 2026-07-28 era was negotiated"
            names = [t.name for t in (await c.list_tools()).tools]
            assert names == ["lookup_customer", "send_email", "refund", "set_tier", "failing_tool"]
            answer = await c.call_tool("lookup_customer", {"id": "42"})
            assert answer.content[0].text == "customer 42: Ada Lovelace" and not answer.is_error
            error = await refusal(c, "delete_customer", {"id": "42"})
            assert error.data["warden_error"] == "tool_not_allowed"
            assert "`delete_customer`" in error.message
    before = len(servers[0 if server == "crm" else 1].requests())
    run(scenario())
    bodies = [r["body"] for r in servers[0 if server == "crm" else 1].requests()[before:]]
    assert not any("delete_customer" in b for b in bodies), "a refused call never reaches the server"


@pytest.mark.parametrize("mode", ERAS)
def test_each_argument_rule_is_enforced_before_the_call_leaves(warden, servers, mode):
    refused = [
        ("send_email", {"to": "a@evil.com", "body": "hi"}, "`to`", "must match `*@example.com`"),
        ("send_email", {"to": "a@evil.com, b@example.com", "body": "hi"}, "`to`", "admits no ','"),
        ("send_email", {"to": "b@example.com", "body": "x" * 21}, "`body`", "21 characters long"),
        ("send_email", {"body": "hi"}, "`to`", "missing"),
        ("send_email", {"to": 7, "body": "hi"}, "`to`", "must be a string"),
        ("refund", {"customer_id": "1", "amount": 101}, "`amount`", "at most 100"),
        ("refund", {"customer_id": "1", "amount": 0.5}, "`amount`", "at least 1"),
        ("refund", {"customer_id": "1", "amount": "50"}, "`amount`", "must be a number"),
        ("set_tier", {"customer_id": "1", "tier": "platinum"}, "`tier`", 'one of "gold", "silver"'),
    ]

    async def scenario():
        async with client(warden, mode=mode) as c:
            for tool, arguments, argument, rule in refused:
                error = await refusal(c, tool, arguments)
                assert error.data["warden_error"] == "argument_not_allowed", (tool, arguments)
                assert argument in error.message and rule in error.message, error.message
            assert not (await c.call_tool("send_email", {"to": "b@example.com", "body": "hi"})).is_error
            assert not (await c.call_tool("set_tier", {"customer_id": "1", "tier": "gold"})).is_error
    before = len(servers[0].requests())
    run(scenario())
    reached = [r["body"] for r in servers[0].requests()[before:] if '"tools/call"' in r["body"]]
    assert len(reached) == 2, reached


@pytest.mark.parametrize("mode", ERAS)
def test_resources_and_prompts_exist_only_as_granted(warden, mode):
    async def scenario():
        async with client(warden, mode=mode) as c:
            templates = (await c.list_resource_templates()).resource_templates
            assert [t.uri_template for t in templates] == ["crm://customers/{id}"]
            assert (await c.list_resources()).resources == []  # the ledger is not granted
            contents = (await c.read_resource("crm://customers/7")).contents
            assert contents[0].text == "customer record 7"
            with pytest.raises(MCPError) as refused:
                await c.read_resource("crm://internal/ledger")
            assert refused.value.error.data["warden_error"] == "resource_not_allowed"
            assert [p.name for p in (await c.list_prompts()).prompts] == ["greeting"]
            assert (await c.get_prompt("greeting", {"name": "Ada"})).messages
            with pytest.raises(MCPError) as refused:
                await c.get_prompt("internal_prompt")
            assert refused.value.error.data["warden_error"] == "prompt_not_allowed"
    run(scenario())


def test_the_server_gets_its_own_credential_and_the_agents_identity(warden, servers):
    before = len(servers[0].requests())
    run(list_tools_of(warden, "crm", "legacy"))
    seen = servers[0].requests()[before:]
    assert {r["method"] for r in seen} >= {"POST", "GET", "DELETE"}, "the GET stream and DELETE pass too"
    for r in seen:
        assert r["headers"]["authorization"] == f"Bearer {SERVER_TOKEN}"
        assert MCP_KEY not in json.dumps(r["headers"])
        assert r["headers"]["x-agent-id"] == "mcp-bot"
    jwks = httpx.get(warden.admin + "/.well-known/jwks.json", timeout=5).json()
    [jwk] = jwks["keys"]
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(seen[0]["headers"]["x-agent-identity"], key, algorithms=["EdDSA"],
                        options={"verify_aud": False})
    assert claims["sub"] == "mcp-bot"


async def list_tools_of(warden, server, mode, key=MCP_KEY):
    async with client(warden, server, key=key, mode=mode) as c:
        return [t.name for t in (await c.list_tools()).tools]


def test_paginated_lists_are_filtered_page_by_page(warden):
    def page(cursor=None):
        params = {"cursor": cursor} if cursor else {}
        r = rpc(warden, {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": params}, server="paged")
        return r.json()["result"]
    first = page()
    assert [t["name"] for t in first["tools"]] == ["lookup_customer"] and first["nextCursor"] == "2"
    assert [t["name"] for t in page("2")["tools"]] == ["send_email"]


def rpc(warden, message, server="crm", key=MCP_KEY, headers=None, raw=None):
    sent = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream", **(headers or {})}
    body = raw if raw is not None else json.dumps(message)
    return httpx.post(f"{warden.base}/mcp/{server}", content=body, headers=sent, timeout=10)


def sse_messages(response):
    if response.headers["content-type"].startswith("application/json"):
        return [response.json()]
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]


def initialize(warden, key=MCP_KEY):
    r = rpc(warden, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}, key=key)
    assert r.status_code == 200, r.text
    return r.headers["mcp-session-id"]


def test_a_session_belongs_to_the_agent_that_opened_it(warden, servers):
    session = initialize(warden)
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "lookup_customer", "arguments": {"id": "1"}}}
    mine = rpc(warden, call, headers={"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    assert mine.status_code == 200 and sse_messages(mine)[-1]["result"]["content"][0]["text"].startswith("customer 1")
    before = len(servers[0].requests())
    for method in ["POST", "GET", "DELETE"]:
        stolen = httpx.request(method, f"{warden.base}/mcp/crm", content=json.dumps(call) if method == "POST" else None,
                               headers={"Authorization": f"Bearer {OTHER_KEY}", "Mcp-Session-Id": session,
                                        "Accept": "application/json, text/event-stream"}, timeout=10)
        assert stolen.status_code == 404, (method, stolen.text)
        assert stolen.headers["x-warden-error"] == "mcp_session_not_found"
        assert stolen.json()["error"]["data"]["warden_error"] == "mcp_session_not_found"
    invented = rpc(warden, call, headers={"Mcp-Session-Id": "not-a-session"})
    assert invented.status_code == 404
    assert len(servers[0].requests()) == before, "nothing of another agent's session reached the server"
    ended = httpx.delete(f"{warden.base}/mcp/crm", headers={"Authorization": f"Bearer {MCP_KEY}", "Mcp-Session-Id": session}, timeout=10)
    assert ended.status_code == 200
    assert rpc(warden, call, headers={"Mcp-Session-Id": session}).status_code == 404, "an ended session is forgotten"


LOOKUP = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "lookup_customer", "arguments": {"id": "1"}}}
MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


@pytest.mark.parametrize("trick, raw, headers, code, warden_code", [
    ("duplicate tool name", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup_customer","name":"delete_customer"}}',
     {}, -32700, "invalid_json"),
    ("duplicate argument", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_email","arguments":{"to":"a@example.com","body":"x","to":"a@evil.com"}}}',
     {}, -32700, "invalid_json"),
    ("batch", json.dumps([LOOKUP]), {}, -32600, "invalid_mcp_request"),
    ("method header", json.dumps(LOOKUP), {"Mcp-Method": "tools/list"}, -32020, "invalid_mcp_request"),
    ("name header", json.dumps(LOOKUP), {"Mcp-Method": "tools/call", "Mcp-Name": "delete_customer"}, -32020, "invalid_mcp_request"),
    ("name header on a list", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}), {"Mcp-Name": "x"}, -32020, "invalid_mcp_request"),
    ("unknown method", '{"jsonrpc":"2.0","id":1,"method":"tools/execute","params":{"name":"delete_customer"}}', {}, -32601, "invalid_mcp_request"),
    ("notification that acts", '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_customer"}}', {}, -32601, "invalid_mcp_request"),
    ("not JSON-RPC", '{"jsonrpc":"1.0","id":1,"method":"tools/list"}', {}, -32600, "invalid_mcp_request"),
])
def test_what_the_server_could_read_differently_is_refused_never_forwarded(warden, servers, trick, raw, headers, code, warden_code):
    before = len(servers[0].requests())
    r = rpc(warden, None, raw=raw, headers=headers)
    assert r.status_code == 400, (trick, r.text)
    assert r.headers["x-warden-error"] == warden_code
    assert r.json()["error"]["code"] == code and r.json()["error"]["data"]["warden_error"] == warden_code
    assert len(servers[0].requests()) == before, trick


def test_routing_headers_that_agree_with_the_body_pass(warden):
    call = {**LOOKUP, "params": {**LOOKUP["params"], "_meta": MODERN_META}}
    headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "lookup_customer"}
    assert "result" in sse_messages(rpc(warden, call, headers=headers))[-1]
    encoded = {**headers, "Mcp-Name": "=?base64?bG9va3VwX2N1c3RvbWVy?="}  # lookup_customer
    assert "result" in sse_messages(rpc(warden, call, headers=encoded))[-1]


def test_http_level_refusals_keep_their_status(warden):
    nobody = httpx.post(f"{warden.base}/mcp/crm", content=json.dumps(LOOKUP), timeout=10)
    assert nobody.status_code == 401 and nobody.json()["error"]["data"]["warden_error"] == "missing_credentials"
    not_granted = rpc(warden, LOOKUP, key=AGENT_KEY)
    assert not_granted.status_code == 403 and not_granted.headers["x-warden-error"] == "mcp_server_not_allowed"
    assert "`crm`" in not_granted.json()["error"]["message"]
    unknown = rpc(warden, LOOKUP, server="nowhere")
    assert unknown.status_code == 404 and unknown.headers["x-warden-error"] == "mcp_server_not_found"


def test_per_day_quotas_hold_under_concurrency(warden, servers):
    before = len(servers[0].requests())
    call = {**LOOKUP, "params": {**LOOKUP["params"], "_meta": MODERN_META}}
    headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "lookup_customer"}
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: rpc(warden, call, key=QUOTA_KEY, headers=headers), range(16)))
    messages = [sse_messages(a)[-1] for a in answers]
    allowed = [m for m in messages if "result" in m]
    refused = [m for m in messages if "error" in m]
    assert len(allowed) == 5 and len(refused) == 11
    for m in refused:
        assert m["error"]["data"]["warden_error"] == "tool_limit_exhausted"
        assert m["error"]["data"]["retry_after"] > 0
        assert "`per_day` (5)" in m["error"]["message"]
    calls = [r for r in servers[0].requests()[before:] if '"tools/call"' in r["body"]]
    assert len(calls) == 5


def test_argument_sums_are_reserved_under_concurrency(warden, servers):
    refunded_before = len(servers[0].seen()["refunded"])

    def refund(_):
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "refund", "arguments": {"customer_id": "1", "amount": 30}, "_meta": MODERN_META}}
        headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "refund"}
        return sse_messages(rpc(warden, message, key=QUOTA_KEY, headers=headers))[-1]
    with ThreadPoolExecutor(max_workers=8) as pool:
        messages = list(pool.map(refund, range(8)))
    assert sum("result" in m for m in messages) == 3  # 3 × 30 fit in 100, a fourth would not
    refused = [m for m in messages if "error" in m]
    assert all("`sum_per_day` of `amount` (100)" in m["error"]["message"] for m in refused)
    assert servers[0].seen()["refunded"][refunded_before:] == [30.0] * 3
    negative = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "refund", "arguments": {"customer_id": "1", "amount": -500}}}
    answer = rpc(warden, negative, key=QUOTA_KEY).json()
    assert answer["error"]["data"]["warden_error"] == "argument_not_allowed", "a negative amount cannot buy back quota"


def canonical_sha256(arguments):
    return hashlib.sha256(json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def call_tool(warden, name, arguments, key=MCP_KEY):
    """A stateless (2026-07-28) `tools/call`, as the SDK sends one."""
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": name, "arguments": arguments, "_meta": MODERN_META}}
    headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": name}
    return rpc(warden, message, key=key, headers=headers)


def test_every_tool_call_is_audited_with_a_digest_of_its_arguments(warden):
    secret_body = "the secret plan"
    allowed = call_tool(warden, "send_email", {"to": "ceo@example.com", "body": secret_body})
    record = audit_record(warden.audit_log, allowed.headers["x-request-id"])
    assert record["type"] == "mcp" and record["decision"] == "allow" and record["code"] == "ok"
    assert record["mcp"] == {"server": "crm", "method": "tools/call", "tool": "send_email", "is_error": False,
                             "arguments_sha256": canonical_sha256({"to": "ceo@example.com", "body": secret_body})}
    assert secret_body not in json.dumps(record) and "ceo@example.com" not in json.dumps(record)
    assert record["latency_ms"] > 0
    refused = call_tool(warden, "delete_customer", {"id": "42"})
    record = audit_record(warden.audit_log, refused.headers["x-request-id"])
    assert record["decision"] == "deny" and record["code"] == "tool_not_allowed"
    assert record["mcp"]["tool"] == "delete_customer" and record["mcp"]["arguments_sha256"] == canonical_sha256({"id": "42"})
    failed = call_tool(warden, "failing_tool", {})
    assert audit_record(warden.audit_log, failed.headers["x-request-id"])["mcp"]["is_error"] is True


def test_tool_calls_are_counted_with_labels_bounded_by_policy(warden):
    call_tool(warden, "failing_tool", {})
    for invented in ["x1", "x2", "x3"]:
        call_tool(warden, invented, {})
    assert warden.metric("warden_mcp_calls_total", 'agent="mcp-bot",code="ok",server="crm",tool="fail*"') >= 1
    assert warden.metric("warden_mcp_calls_total", 'agent="mcp-bot",code="tool_not_allowed",server="crm",tool="other"') >= 3
    assert "x1" not in warden.metrics()


def test_the_typescript_sdk_lists_and_calls_through_warden(warden, servers):
    def node(tool, arguments):
        out = subprocess.run(["node", str(HERE / "node" / "mcp_client.mjs"), f"{warden.base}/mcp/crm", MCP_KEY,
                              tool, json.dumps(arguments)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])
    ok = node("lookup_customer", {"id": "9"})
    assert ok["tools"] == ["lookup_customer", "send_email", "refund", "set_tier", "failing_tool"]
    assert ok["result"] == {"text": "customer 9: Ada Lovelace", "isError": False} and ok["session"]
    refused = node("send_email", {"to": "x@evil.com", "body": "hi"})
    assert refused["result"]["data"]["warden_error"] == "argument_not_allowed"
    assert "`to`" in refused["result"]["error"]


def test_the_demo_serves_a_mock_mcp_server(tmp_path):
    port, admin = free_port(), free_port()
    demo = subprocess.Popen([WARDEN_BIN, "demo", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{admin}/readyz")
        time.sleep(0.2)

        async def scenario():
            http = create_mcp_http_client(headers={"Authorization": "Bearer wdn_demo_support_bot_key"})
            async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp/crm", http_client=http), mode="auto") as c:
                names = [t.name for t in (await c.list_tools()).tools]
                assert names == ["lookup_customer", "send_email", "refund"]
                sent = await c.call_tool("send_email", {"to": "ada@example.com", "body": "hello"})
                assert sent.content[0].text == "email sent to ada@example.com"
                error = await refusal(c, "refund", {"customer_id": "42", "amount": 250})
                assert error.data["warden_error"] == "argument_not_allowed"
        run(scenario())
    finally:
        demo.kill()
        demo.wait()


def test_a_jwt_and_a_message_signature_authenticate_too(warden, servers):
    minted = run_warden_cli("token", "mint", "--issuer-key", str(warden.keys / "issuer.key"), "--agent", "mcp-bot",
                            "--audience", "warden", "--issuer", "corp", "--ttl", "5m")
    assert minted.returncode == 0, minted.stderr
    assert run(list_tools_of(warden, "crm", "auto", key=minted.stdout.strip()))[0] == "lookup_customer"
    key = load_pem_private_key((warden.keys / "signer.key").read_bytes(), None)

    def signed(body, tamper=False):
        request = requests.Request("POST", f"{warden.base}/mcp/crm", data=body, headers={
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "lookup_customer"}).prepare()
        signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519,
                                   key_resolver=MappingKeyResolver(public_keys={}, private_keys={"mcp-sig-1": key}))
        signer.sign(request, key_id="mcp-sig-1", covered_component_ids=("@method", "@authority", "@target-uri"),
                    label="sig1", created=datetime.datetime.now(datetime.timezone.utc), nonce=uuid.uuid4().hex, body=body)
        if tamper:
            request.body = body.replace(b"lookup_customer", b"delete_customer")
        return requests.Session().send(request, timeout=10)
    body = json.dumps({**LOOKUP, "params": {**LOOKUP["params"], "_meta": MODERN_META}}).encode()
    before = len(servers[0].requests())
    tampered = signed(body, tamper=True)
    assert tampered.status_code == 401 and tampered.headers["x-warden-error"] == "invalid_signature"
    assert len(servers[0].requests()) == before, "a body other than the one signed never leaves"
    good = signed(body)
    assert good.status_code == 200, good.text
    assert sse_messages(good)[-1]["result"]["content"][0]["text"] == "customer 1: Ada Lovelace"
    assert servers[0].requests()[-1]["headers"]["x-agent-id"] == "mcp-bot"


def test_the_2025_06_18_handshake_passes_too(warden):
    r = rpc(warden, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
    assert r.status_code == 200 and sse_messages(r)[-1]["result"]["protocolVersion"] == "2025-06-18"
    headers = {"Mcp-Session-Id": r.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-06-18"}
    assert rpc(warden, {"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers).status_code == 202
    listed = sse_messages(rpc(warden, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers))[-1]
    assert [t["name"] for t in listed["result"]["tools"]] == ["lookup_customer", "send_email", "refund", "set_tier", "failing_tool"]


def test_the_session_stream_holds_no_concurrency_slot(warden, servers):
    async def scenario():
        async with client(warden, key=TIGHT_KEY) as c:
            for _ in range(20):  # the SDK opened its GET stream; calls still go one at a time
                await asyncio.sleep(0.01)
                assert not (await c.call_tool("lookup_customer", {"id": "3"})).is_error
    before = len(servers[0].requests())
    run(scenario())
    assert "GET" in {r["method"] for r in servers[0].requests()[before:]}
