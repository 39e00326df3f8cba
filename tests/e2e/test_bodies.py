"""Bodies of any size up to the limit reach the provider byte for byte, sent by curl with
Content-Length or chunked, with and without `Expect: 100-continue`.

Pingora replays a pre-read body from its retry buffer only up to 64 KiB (65 536 bytes): bodies up
to that go in one pass, larger ones through the large-body path. The sizes straddle that edge."""

import hashlib
import json
import subprocess

import pytest

from conftest import AGENT_KEY

SIZES = {"60KB": 60_000, "65535B": 65_535, "65536B": 65_536, "65537B": 65_537, "70KB": 70_000,
         "1MB": 1_000_000, "8MB": 8_000_000}


def body_of(size):
    head = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"'
    tail = b'"}]}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


@pytest.fixture(scope="module")
def bodies(tmp_path_factory):
    d = tmp_path_factory.mktemp("bodies")
    files = {}
    for name, size in SIZES.items():
        path = d / f"{name}.json"
        path.write_bytes(body_of(size))
        files[name] = path
    return files


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("encoding", ["content-length", "chunked"])
@pytest.mark.parametrize("expect", ["expect-100", "no-expect"])
def test_body_reaches_provider_intact(warden, provider, bodies, size, encoding, expect):
    path = bodies[size]
    cmd = ["curl", "-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}", warden.base + "/v1/chat/completions",
           "-H", f"Authorization: Bearer {AGENT_KEY}", "-H", "Content-Type: application/json",
           "-H", f"X-Request-ID: body-{size}-{encoding}-{expect}", "--data-binary", f"@{path}"]
    if encoding == "chunked":
        cmd += ["-H", "Transfer-Encoding: chunked"]
    cmd += ["-H", "Expect: 100-continue"] if expect == "expect-100" else ["-H", "Expect:"]
    out = subprocess.run(cmd, capture_output=True, timeout=60)
    body, _, status = out.stdout.rpartition(b"\n")
    assert status == b"200", out.stderr + body[:500]
    assert json.loads(body)["choices"][0]["message"]["content"] == "hello from mock"
    seen = [r for r in provider.requests if r.header("x-client-request-id") == f"body-{size}-{encoding}-{expect}"]
    assert len(seen) == 1
    assert seen[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert seen[0].header("content-length") == str(SIZES[size])
    assert seen[0].header("transfer-encoding") is None
    assert seen[0].header("expect") is None


def test_three_large_bodies_on_one_connection(warden, provider, bodies):
    path = bodies["1MB"]
    url = warden.base + "/v1/chat/completions"
    cmd = ["curl", "-sS", "--max-time", "30"]
    for i in range(3):
        cmd += ["--next"] if i else []
        cmd += ["-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n", url,
                "-H", f"Authorization: Bearer {AGENT_KEY}", "-H", "Expect:", "--data-binary", f"@{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    lines = out.stdout.split()
    assert lines == ["200", "1", "200", "0", "200", "0"], out.stdout + out.stderr
