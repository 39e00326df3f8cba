"""`warden check`, `warden keys new`, `warden demo`, and `serve` refusing a bad policy."""

import re
import subprocess
import time
import urllib.request
from pathlib import Path

import httpx

from harness import ROOT, WARDEN_BIN, eventually, free_port, run_warden_cli, sha256_hex


def test_check_accepts_every_bundled_config():
    examples = ROOT / "config" / "examples"
    configs = [ROOT / "config" / "warden.yaml", examples,
               *sorted(p for p in examples.glob("*.yaml") if p.name != "kustomization.yaml")]
    # The directory is also the kustomize root that makes the policy ConfigMap: its
    # kustomization.yaml is kustomize's, and loading the directory skips it.
    assert (examples / "kustomization.yaml").exists() and len(configs) >= 3
    for path in configs:
        r = run_warden_cli("check", str(path))
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r": ok: version [0-9a-f]{64} ", r.stdout)


BAD = """version: 1
providers:
  openai:
    base_url: https://api.openai.com/v1
    models: ["gpt-[4"]
    api_key_env: OPENAI_API_KEY
agents:
  bot:
    keys:
      - {id: k1, sha256: nothex}
      - {id: k1, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
    models: ["claude-*"]
    limits:
      request_per_minute: 5
"""


def test_check_reports_every_problem_with_position(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(BAD)
    r = run_warden_cli("check", str(typo))
    assert r.returncode == 1
    assert re.search(rf"^{re.escape(str(typo))}:14:7: error: .*request_per_minute", r.stdout, re.M), r.stdout

    semantic = tmp_path / "semantic.yaml"
    semantic.write_text(BAD.replace("    limits:\n      request_per_minute: 5\n", ""))
    r = run_warden_cli("check", str(semantic))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert any(l.startswith(f"{semantic}:5:14: error: bad model glob `gpt-[4`") for l in lines), r.stdout
    assert any(l.startswith(f"{semantic}:10:26: error: `sha256` must be 64 hex digits") for l in lines), r.stdout
    assert any(l.startswith(f"{semantic}:11:14: error: key id `k1` is already used") for l in lines), r.stdout
    assert any(l.startswith(f"{semantic}:12:14: warning: agent `bot` allows model `claude-*`, which no provider serves") for l in lines), r.stdout


def test_check_directory_merges_and_finds_duplicates_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text("version: 1\nproviders:\n  m: {kind: mock, models: ['mock-*']}\nagents:\n  bot: {models: ['mock-x']}\n")
    (tmp_path / "b.yml").write_text("version: 1\nagents:\n  other: {models: ['mock-y']}\n")
    (tmp_path / ".hidden.yaml").write_text("not: [valid")
    r = run_warden_cli("check", str(tmp_path))
    assert r.returncode == 0, r.stdout
    assert "(2 agents, 1 providers, 0 keys)" in r.stdout
    (tmp_path / "c.yaml").write_text("version: 1\nagents:\n  bot: {models: ['mock-z']}\n")
    r = run_warden_cli("check", str(tmp_path))
    assert r.returncode == 1
    assert f"{tmp_path / 'c.yaml'}:3:3: error: agent `bot` is already defined at {tmp_path / 'a.yaml'}:5" in r.stdout


def test_check_broken_yaml_and_usage(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nagents: [unclosed\n")
    r = run_warden_cli("check", str(broken))
    assert r.returncode == 1
    assert re.match(rf"{re.escape(str(broken))}:2:\d+: error: [a-z]", r.stdout), r.stdout
    assert run_warden_cli("check").returncode == 2
    assert run_warden_cli("check", str(tmp_path / "missing.yaml")).returncode == 1


def test_serve_refuses_invalid_policy(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    r = subprocess.run([WARDEN_BIN, "serve", "--config", str(bad)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert "request_per_minute" in r.stderr and "not starting" in r.stderr


def test_keys_new_prints_secret_whose_hash_is_in_the_yaml(tmp_path):
    r = run_warden_cli("keys", "new", "--agent", "billing-bot")
    assert r.returncode == 0
    secret = re.search(r"^\s+(wdn_[0-9a-f]{64})$", r.stdout, re.M).group(1)
    digest = re.search(r"sha256: ([0-9a-f]{64})", r.stdout).group(1)
    assert digest == sha256_hex(secret)
    policy = tmp_path / "p.yaml"
    yaml_part = r.stdout[r.stdout.index("  agents:"):]
    policy.write_text("version: 1\nproviders:\n  m: {kind: mock, models: ['mock-*']}\n"
                      + "\n".join(l[2:] for l in yaml_part.splitlines()) + "\n    models: ['mock-a']\n")
    check = run_warden_cli("check", str(policy))
    assert check.returncode == 0, check.stdout + policy.read_text()


def test_demo_serves_with_printed_keys():
    port, admin = free_port(), free_port()
    proc = subprocess.Popen([WARDEN_BIN, "demo", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    key = re.search(r"support-bot\s+(wdn_\S+)", out).group(1)
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in out
    assert "OPENAI_BASE_URL" in out
    assert proc.returncode == 0
    # the printed key works against a fresh demo
    proc = subprocess.Popen([WARDEN_BIN, "demo", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 15
        while True:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=5,
                               headers={"Authorization": f"Bearer {key}"},
                               json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hello warden"}]})
                break
            except httpx.TransportError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "Mock reply from Warden to: hello warden"
        assert r.json()["usage"]["total_tokens"] > 0
    finally:
        proc.kill()
        proc.wait()


def test_admin_endpoints(warden):
    httpx.get(warden.base + "/v1/models")  # one request, so the request metrics have a sample
    assert httpx.get(warden.admin + "/healthz").text == "ok\n"
    ready = httpx.get(warden.admin + "/readyz")
    assert ready.status_code == 200 and re.search(r"policy [0-9a-f]{64}", ready.text)
    from prometheus_client.parser import text_string_to_metric_families
    def exported():
        families = {f.name: f for f in text_string_to_metric_families(warden.metrics())}
        assert "warden_requests" in families and "warden_request_duration_seconds" in families
    eventually(exported)
    assert httpx.get(warden.admin + "/nope").status_code == 404


def test_no_secret_reaches_logs_or_metrics(warden):
    from conftest import AGENT_KEY, PROVIDER_KEY
    text = warden.metrics() + Path(warden.log_path).read_text()
    assert AGENT_KEY not in text and PROVIDER_KEY not in text
