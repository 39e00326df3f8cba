"""HTTPS_PROXY mode: CONNECT is identified by Proxy-Authorization, LLM hosts are intercepted
(TLS terminated with a leaf from the test CA, requests governed like base-URL ones), other
destinations are plain tunnels only when the agent lists them. Real clients: the OpenAI Python
SDK with HTTPS_PROXY and SSL_CERT_FILE, and curl -x."""

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trustme

from conftest import AGENT_KEY, OTHER_KEY, PROVIDER_ENV, PROVIDER_KEY, standard_policy
from harness import Warden, audit_record, eventually


class Echo:
    """A TCP server that answers each line with `echo: <line>` (a non-LLM destination)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        with conn, conn.makefile("rwb") as f:
            for line in f:
                f.write(b"echo: " + line)
                f.flush()

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    ca = trustme.CA()
    root = tmp_path_factory.mktemp("intercept-ca")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    # Warden reads the CA key as PKCS#8 (`openssl pkcs8 -topk8 -nocrypt` converts others).
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    (root / "ca.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    return root


@pytest.fixture(scope="module")
def echo():
    e = Echo()
    yield e
    e.close()


@pytest.fixture(scope="module")
def tunnel_warden(provider, ca, echo, tmp_path_factory):
    audit = tmp_path_factory.mktemp("connect-audit")
    # `narrow` (OTHER_KEY) may open plain tunnels to the echo server; `app` to nothing.
    policy = standard_policy(provider.base_url).replace(
        '    endpoints: ["/v1/chat/completions", "/v1/models"]\n',
        f'    endpoints: ["/v1/chat/completions", "/v1/models"]\n    destinations: ["127.0.0.1:{echo.port}"]\n')
    policy += f"""audit:
  sink: {{file: {{path: {audit}/audit.jsonl}}}}
  spool_dir: {audit}/spool
"""
    w = Warden(policy, env=PROVIDER_ENV,
               server_extra=f"  intercept_ca_cert_file: {ca}/ca.pem\n  intercept_ca_key_file: {ca}/ca.key\n"
                            "  tunnel_idle_timeout_secs: 1\n")
    w.audit_log = audit / "audit.jsonl"
    yield w
    w.stop()


def connect(warden, target, auth=None, send=b""):
    """A raw CONNECT; returns (status line, headers+body text, socket)."""
    s = socket.create_connection(("127.0.0.1", warden.port), timeout=5)
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if auth:
        head += f"Proxy-Authorization: {auth}\r\n"
    s.sendall((head + "\r\n").encode() + send)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode(), data.decode(errors="replace"), s


def sdk(warden, ca, script, key=AGENT_KEY):
    env = {"HTTPS_PROXY": f"http://agent:{key}@127.0.0.1:{warden.port}", "SSL_CERT_FILE": f"{ca}/ca.pem",
           "OPENAI_API_KEY": "not-a-provider-key", "PATH": "/usr/bin:/bin", "NO_PROXY": ""}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)


CHAT = """
import json, openai
client = openai.OpenAI(base_url="https://api.openai.com/v1", max_retries=0)
try:
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    print(json.dumps({"ok": r.choices[0].message.content, "tokens": r.usage.total_tokens}))
except openai.APIStatusError as e:
    print(json.dumps({"error": type(e).__name__, "status": e.status_code, "code": e.code}))
"""


def test_openai_sdk_through_https_proxy_is_governed(tunnel_warden, provider, ca):
    out = sdk(tunnel_warden, ca, CHAT.replace("MODEL", '"gpt-4o-mini"'))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"ok": "hello from mock", "tokens": 18}
    upstream = provider.last()
    assert upstream.header("authorization") == f"Bearer {PROVIDER_KEY}"  # swapped, never the agent's
    assert upstream.header("x-agent-id") == "app"
    denied = sdk(tunnel_warden, ca, CHAT.replace("MODEL", '"gpt-4o"'), key=OTHER_KEY)
    assert json.loads(denied.stdout) == {"error": "PermissionDeniedError", "status": 403, "code": "model_not_allowed"}


def test_connect_without_or_with_a_wrong_credential_is_407(tunnel_warden):
    for auth, code in [(None, "missing_credentials"), ("Bearer sk-wrong", "invalid_credentials"),
                       ("Digest abc", "invalid_credentials")]:
        status, text, s = connect(tunnel_warden, "api.openai.com:443", auth)
        s.close()
        assert status.startswith("HTTP/1.1 407"), text
        assert "proxy-authenticate: basic" in text.lower() and f"x-warden-error: {code}" in text.lower()


def test_curl_tunnels_to_a_listed_destination_only(tunnel_warden, echo, tmp_path):
    ok = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-p", "-x",
                         f"http://narrow:{OTHER_KEY}@127.0.0.1:{tunnel_warden.port}",
                         f"http://127.0.0.1:{echo.port}/"], capture_output=True, text=True, timeout=30)
    # curl's HTTP request reaches the echo server through the tunnel; echo is not HTTP, so curl
    # sees no valid response, but the CONNECT itself succeeded.
    assert "CONNECT" not in ok.stderr
    refused = subprocess.run(["curl", "-sv", "-p", "-x", f"http://narrow:{OTHER_KEY}@127.0.0.1:{tunnel_warden.port}",
                              "https://example.com/"], capture_output=True, text=True, timeout=30)
    assert "HTTP/1.1 403" in refused.stderr
    status, text, s = connect(tunnel_warden, f"127.0.0.1:{echo.port}", f"Bearer {OTHER_KEY}")
    assert status == "HTTP/1.1 200 Connection Established"
    s.sendall(b"hello\n")
    assert s.recv(100) == b"echo: hello\n"
    s.close()
    status, text, s = connect(tunnel_warden, "10.1.2.3:22", f"Bearer {OTHER_KEY}")
    s.close()
    assert status.startswith("HTTP/1.1 403") and "destination_not_allowed" in text
    assert "`10.1.2.3:22`" in text and "destinations" in text, "the refusal names the destination"


def test_a_silent_tunnel_is_closed_and_audited(tunnel_warden, echo):
    status, _, s = connect(tunnel_warden, f"127.0.0.1:{echo.port}", f"Bearer {OTHER_KEY}")
    assert status.endswith("200 Connection Established")
    s.sendall(b"ping\n")
    assert s.recv(100) == b"echo: ping\n"
    started = time.time()
    assert s.recv(100) == b""  # closed by Warden after the 1 s idle timeout
    assert time.time() - started < 5
    s.close()

    def audited():
        records = [json.loads(line) for line in tunnel_warden.audit_log.read_text().splitlines()]
        tunnels = [r for r in records if r.get("type") == "tunnel" and r.get("tunnel_end") == "idle_timeout"]
        assert tunnels, records[-3:]
        t = tunnels[-1]
        assert t["destination"] == f"127.0.0.1:{echo.port}" and t["agent"] == "narrow"
        assert t["bytes_up"] == 5 and t["bytes_down"] == 11 and t["decision"] == "allow"
    eventually(audited, timeout=10)
    assert tunnel_warden.metric("warden_tunnel_bytes_total", 'direction="up"') >= 5


def test_intercepted_plain_http_on_port_80(tunnel_warden, provider):
    status, _, s = connect(tunnel_warden, "api.openai.com:80", f"Bearer {AGENT_KEY}")
    assert status.endswith("200 Connection Established")
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    answer = b""
    while b"hello from mock" not in answer:
        chunk = s.recv(4096)
        assert chunk, answer
        answer += chunk
    s.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert provider.last().header("authorization") == f"Bearer {PROVIDER_KEY}"


NODE_DIR = Path(__file__).parent / "node"


def test_node_undici_proxy_agent_is_governed(tunnel_warden, provider, ca):
    assert (NODE_DIR / "node_modules" / "undici").is_dir(), "scripts/test installs tests/e2e/node"

    def call(key, model):
        out = subprocess.run(["node", str(NODE_DIR / "chat.mjs"), f"http://127.0.0.1:{tunnel_warden.port}", key, model],
                             env={"NODE_EXTRA_CA_CERTS": f"{ca}/ca.pem", "PATH": "/usr/local/bin:/usr/bin:/bin"},
                             capture_output=True, text=True, timeout=60, cwd=NODE_DIR)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    ok = call(AGENT_KEY, "gpt-4o-mini")
    assert ok["status"] == 200 and ok["body"]["choices"][0]["message"]["content"] == "hello from mock"
    assert provider.last().header("authorization") == f"Bearer {PROVIDER_KEY}"
    denied = call(OTHER_KEY, "gpt-4o")
    assert denied["status"] == 403 and denied["body"]["error"]["code"] == "model_not_allowed"


def test_tunnel_records_keep_the_chain_intact(tunnel_warden):
    from harness import run_warden_cli
    status, _, s = connect(tunnel_warden, "10.9.9.9:22", f"Bearer {OTHER_KEY}")
    s.close()
    assert status.startswith("HTTP/1.1 403")

    def intact():
        assert '"type":"tunnel"' in tunnel_warden.audit_log.read_text()
        out = run_warden_cli("audit", "verify", str(tunnel_warden.audit_log))
        assert out.returncode == 0, out.stdout + out.stderr
    eventually(intact, timeout=10)


REQUESTS_CHAT = """
import json, os, ssl, requests
r = requests.post("https://api.openai.com/v1/chat/completions", timeout=30,
                  json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
trusted = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"]).get_ca_certs()
print(json.dumps({"status": r.status_code, "content": r.json()["choices"][0]["message"]["content"],
                  "trusted": len(trusted)}))
"""


def system_roots():
    """How many root certificates the system's store holds (what the bundle must keep)."""
    import ssl
    context = ssl.create_default_context(cafile=ssl.get_default_verify_paths().openssl_cafile)
    return len(context.get_ca_certs())


def test_ca_bundle_lets_requests_and_the_sdk_trust_warden_and_every_other_host(tunnel_warden, provider, ca, tmp_path):
    from harness import run_warden_cli
    bundle = tmp_path / "bundle.pem"
    made = run_warden_cli("ca", "bundle", "--cert", f"{ca}/ca.pem", "--out", str(bundle))
    assert made.returncode == 0, made.stderr
    text = bundle.read_text()
    assert (Path(ca) / "ca.pem").read_text().strip() in text, "Warden's CA is in the bundle"
    assert text.count("BEGIN CERTIFICATE") >= system_roots() + 1 > 2, "and so are the system's roots"
    # requests reads REQUESTS_CA_BUNDLE (not SSL_CERT_FILE): the README's recipe.
    env = {"HTTPS_PROXY": f"http://agent:{AGENT_KEY}@127.0.0.1:{tunnel_warden.port}", "REQUESTS_CA_BUNDLE": str(bundle),
           "PATH": "/usr/bin:/bin", "NO_PROXY": ""}
    out = subprocess.run([sys.executable, "-c", REQUESTS_CHAT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["status"] == 200 and answer["content"] == "hello from mock"
    assert answer["trusted"] >= system_roots() + 1
    assert provider.last().header("authorization") == f"Bearer {PROVIDER_KEY}"
    # httpx and the OpenAI SDK read SSL_CERT_FILE: the bundle there, not the CA alone.
    sdk_out = sdk(tunnel_warden, ca, CHAT.replace("MODEL", '"gpt-4o-mini"'))
    assert json.loads(sdk_out.stdout)["ok"] == "hello from mock", sdk_out.stderr
    env = {"HTTPS_PROXY": f"http://agent:{AGENT_KEY}@127.0.0.1:{tunnel_warden.port}", "SSL_CERT_FILE": str(bundle),
           "OPENAI_API_KEY": "not-a-provider-key", "PATH": "/usr/bin:/bin", "NO_PROXY": ""}
    sdk_bundle = subprocess.run([sys.executable, "-c", CHAT.replace("MODEL", '"gpt-4o-mini"')], env=env,
                                capture_output=True, text=True, timeout=60)
    assert json.loads(sdk_bundle.stdout) == {"ok": "hello from mock", "tokens": 18}, sdk_bundle.stderr


def test_ca_new_makes_a_ca_warden_intercepts_with_and_bundle_reads_it_from_the_policy(provider, tmp_path):
    from harness import run_warden_cli
    made = run_warden_cli("ca", "new", "--cert", str(tmp_path / "ca.pem"), "--key", str(tmp_path / "ca.key"))
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0, "the key is private"
    again = run_warden_cli("ca", "new", "--cert", str(tmp_path / "ca.pem"), "--key", str(tmp_path / "ca.key"))
    assert again.returncode == 1 and "exists" in again.stderr, "never over an existing key"
    w = Warden(standard_policy(provider.base_url), env=PROVIDER_ENV,
               server_extra=f"  intercept_ca_cert_file: {tmp_path}/ca.pem\n  intercept_ca_key_file: {tmp_path}/ca.key\n")
    try:
        bundle = tmp_path / "bundle.pem"
        made = run_warden_cli("ca", "bundle", "--config", str(w.config_path), "--out", str(bundle))
        assert made.returncode == 0, made.stderr
        assert (tmp_path / "ca.pem").read_text().strip() in bundle.read_text()
        env = {"HTTPS_PROXY": f"http://agent:{AGENT_KEY}@127.0.0.1:{w.port}", "REQUESTS_CA_BUNDLE": str(bundle),
               "PATH": "/usr/bin:/bin", "NO_PROXY": ""}
        out = subprocess.run([sys.executable, "-c", REQUESTS_CHAT], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["content"] == "hello from mock"
    finally:
        w.stop()
    no_ca = run_warden_cli("ca", "bundle", "--config", str(tmp_path / "missing.yaml"))
    assert no_ca.returncode == 1 and "missing.yaml" in no_ca.stderr


def test_intercepted_leaves_are_short_lived(tunnel_warden, ca):
    import ssl
    status, _, s = connect(tunnel_warden, "api.openai.com:443", f"Bearer {AGENT_KEY}")
    assert status.endswith("200 Connection Established")
    context = ssl.create_default_context(cafile=f"{ca}/ca.pem")
    with context.wrap_socket(s, server_hostname="api.openai.com") as tls:
        cert = tls.getpeercert()
    now = time.time()
    not_before = ssl.cert_time_to_seconds(cert["notBefore"])
    not_after = ssl.cert_time_to_seconds(cert["notAfter"])
    assert not_before <= now, "valid now, also for a clock a little behind"
    assert 6 * 86400 < not_after - now <= 7 * 86400 + 60, "a week, not until year 4096"
