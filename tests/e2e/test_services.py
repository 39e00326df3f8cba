"""Services: non-LLM APIs under /svc/<name>/…, called with the Python `requests` library.
Warden checks service, method and path, counts calls per day, swaps the credential, strips the
agent's identity headers, streams bodies of any size without reading them, and audits."""

import hashlib
import http.server
import json
import threading

import pytest
import requests

from conftest import AGENT_KEY, PROVIDER_ENV, sha256_hex, standard_policy
from harness import Warden, audit_record

PAYER_KEY = "sk-payer-agent-key"
COUNTED_KEY = "sk-counted-agent-key"
SERVICE_KEY = "sk-live-stripe-secret"


class Service:
    """An HTTP API that records what reached it: method, path, headers, body size and digest
    (Content-Length or chunked)."""

    def __init__(self):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                digest, size = hashlib.sha256(), 0
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        length = int(self.rfile.readline().split(b";")[0], 16)
                        if length == 0:
                            self.rfile.readline()
                            break
                        data = self.rfile.read(length)
                        digest.update(data)
                        size += len(data)
                        self.rfile.readline()
                else:
                    remaining = int(self.headers.get("Content-Length", 0))
                    while remaining:
                        data = self.rfile.read(min(remaining, 1 << 16))
                        digest.update(data)
                        size += len(data)
                        remaining -= len(data)
                outer.requests.append({"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                       "size": size, "sha256": digest.hexdigest()})
                body = json.dumps({"object": "list", "received": size}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def service():
    s = Service()
    yield s
    s.close()


@pytest.fixture(scope="module")
def warden(provider, service, tmp_path_factory):
    audit = tmp_path_factory.mktemp("services-audit")
    agents = f"""  payer:
    keys: [{{id: payer-1, sha256: {sha256_hex(PAYER_KEY)}}}]
    models: ["gpt-*"]
    services:
      payments: {{methods: [GET, POST, PUT], paths: ["/v1/payment_intents*", "/v1/files"]}}
  counted:
    keys: [{{id: counted-1, sha256: {sha256_hex(COUNTED_KEY)}}}]
    models: ["gpt-*"]
    services:
      payments: {{methods: ["*"], paths: ["*"], requests_per_day: 2}}
"""
    policy = standard_policy(provider.base_url, extra_agents=agents) + f"""services:
  payments: {{base_url: "http://127.0.0.1:{service.port}/api", api_key_env: TEST_SERVICE_KEY, auth: bearer}}
audit:
  sink: {{file: {{path: {audit}/audit.jsonl}}}}
  spool_dir: {audit}/spool
"""
    w = Warden(policy, env={**PROVIDER_ENV, "TEST_SERVICE_KEY": SERVICE_KEY},
               server_extra="  max_body_bytes: 1048576\n")
    w.audit_log = audit / "audit.jsonl"
    yield w
    w.stop()


def call(warden, method, path, key=PAYER_KEY, **kwargs):
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return requests.request(method, warden.base + path, headers=headers, timeout=30, **kwargs)


def test_a_granted_call_reaches_the_service_with_its_credential(warden, service):
    r = call(warden, "GET", "/svc/payments/v1/payment_intents?limit=3",
             headers={"X-Agent-ID": "someone-else", "X-Agent-Identity": "forged"})
    assert r.status_code == 200 and r.json()["object"] == "list"
    seen = service.requests[-1]
    assert seen["method"] == "GET" and seen["path"] == "/api/v1/payment_intents?limit=3"
    assert seen["headers"]["authorization"] == f"Bearer {SERVICE_KEY}"
    assert seen["headers"]["x-agent-id"] == "payer"
    assert "x-agent-identity" not in seen["headers"] and PAYER_KEY not in json.dumps(seen["headers"])
    record = audit_record(warden.audit_log, r.headers["x-request-id"])
    assert (record["agent"], record["provider"], record["code"]) == ("payer", "payments", "ok")
    assert record["path"] == "/svc/payments/v1/payment_intents"


def test_service_method_and_path_are_checked(warden, service):
    before = len(service.requests)
    for method, path, key in [("DELETE", "/svc/payments/v1/payment_intents/pi_1", PAYER_KEY),
                              ("GET", "/svc/payments/v1/customers", PAYER_KEY),
                              ("GET", "/svc/nowhere/v1/x", PAYER_KEY),
                              ("GET", "/svc/payments/v1/payment_intents", AGENT_KEY)]:
        r = call(warden, method, path, key=key)
        assert r.status_code == 403, (method, path)
        assert r.json()["error"]["code"] == "destination_not_allowed"
        named = path.split("/")[2]
        assert f"`{named}`" in r.json()["error"]["message"], r.json()
    assert len(service.requests) == before


def test_the_daily_count_answers_429_until_the_day_ends(warden):
    for _ in range(2):
        assert call(warden, "GET", "/svc/payments/v1/anything", key=COUNTED_KEY).status_code == 200
    r = call(warden, "POST", "/svc/payments/v1/anything", key=COUNTED_KEY, data=b"x")
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 86400


def test_large_uploads_stream_through_unread(warden, service):
    """Twenty times the policy's max_body_bytes, chunked and with a length: the service gets
    every byte, and Warden never held the body."""
    blob = hashlib.sha256(b"seed").digest() * (20 * 1024 * 1024 // 32)

    def chunks():
        for i in range(0, len(blob), 1 << 20):
            yield blob[i:i + (1 << 20)]

    for body in (chunks(), blob):
        r = call(warden, "PUT", "/svc/payments/v1/files", data=body)
        assert r.status_code == 200 and r.json()["received"] == len(blob)
        seen = service.requests[-1]
        assert seen["size"] == len(blob) and seen["sha256"] == hashlib.sha256(blob).hexdigest()


def test_check_reports_grants_of_undefined_services(tmp_path):
    from harness import run_warden_cli
    policy = standard_policy("http://127.0.0.1:9/v1", extra_agents="""  payer:
    models: ["gpt-*"]
    services:
      stripe: {methods: [GET], paths: ["/v1/*"]}
      mail: {methods: [get], paths: ["v1/send"]}
""") + """services:
  mail: {base_url: "https://mail.example.com", api_key_env: MAIL_KEY}
"""
    (tmp_path / "p.yaml").write_text(policy)
    out = run_warden_cli("check", str(tmp_path / "p.yaml"))
    assert out.returncode == 1
    assert "is granted service `stripe`, which no `services:` entry defines" in out.stdout
    assert "`get` is not an HTTP method in upper case" in out.stdout
    assert "service paths start with `/`: `v1/send`" in out.stdout


def test_a_tunnel_to_a_service_host_takes_the_service_path(warden, service):
    """HTTPS_PROXY mode: a CONNECT to a service's own host is governed like /svc/<name>/ (here
    plain HTTP inside the tunnel, as an `http://` target through a proxy agent sends it)."""
    from test_connect import connect
    status, _, s = connect(warden, f"127.0.0.1:{service.port}", f"Bearer {PAYER_KEY}")
    assert status.endswith("200 Connection Established")
    s.sendall(f"GET /api/v1/payment_intents HTTP/1.1\r\nHost: 127.0.0.1:{service.port}\r\n"
              f"Authorization: Bearer {PAYER_KEY}\r\n\r\n".encode())
    answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    seen = service.requests[-1]
    assert seen["path"] == "/api/v1/payment_intents"
    assert seen["headers"]["authorization"] == f"Bearer {SERVICE_KEY}" and seen["headers"]["x-agent-id"] == "payer"
    s.sendall(f"GET /api/v1/customers HTTP/1.1\r\nHost: 127.0.0.1:{service.port}\r\n\r\n".encode())
    refused = s.recv(65536)
    assert refused.startswith(b"HTTP/1.1 403") and b"destination_not_allowed" in refused
    s.close()
