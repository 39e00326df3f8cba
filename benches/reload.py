#!/usr/bin/env python3
"""Reload end to end, with the release binary on loopback.

1. Revocation latency: time from a policy file change (revoking the key in use) to the first
   request refused with `credential_revoked`, over many trials, for three ways the change
   lands: atomic rename and a ConfigMap-style `..data` symlink swap (both seen by the file
   watcher), and an atomic rename with `--no-watch` (polling only).
2. Reloads under load: wrk drives the proxy while the policy is rewritten 10 times a second;
   counts failed requests (non-2xx, socket errors) and compares throughput with a run without
   reloads.

Usage: benches/reload.py [--trials 100] [--poll-trials 30] [--load-seconds 10]
"""

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from harness import ConfigMapVolume  # noqa: E402

BIN = ROOT / "target" / "release" / "warden"
KEY = "sk-bench-reload"
LOAD_KEY = "sk-bench-load"
BODY = json.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def policy(port, admin, comment=""):
    return f"""version: 1
server: {{listen: "127.0.0.1:{port}", admin: "127.0.0.1:{admin}"}}
providers:
  local: {{kind: mock, models: ["mock-*"]}}
agents:
  bench:
    keys: [{{id: bench-1, sha256: {sha(KEY)}}}]
    models: ["mock-*"]
  load:
    keys: [{{id: load-1, sha256: {sha(LOAD_KEY)}}}]
    models: ["mock-*"]
    limits: {{requests_per_minute: 1000000000, max_concurrent: 10000}}
# {comment}
"""


def revocations(revoked):
    keys = "[{id: bench-1, reason: bench}]" if revoked else "[]"
    return f"version: 1\nrevocations:\n  keys: {keys}\n"


class Server:
    def __init__(self, layout, args=()):
        self.tmp = tempfile.mkdtemp(prefix="warden-reload-bench-")
        self.port, self.admin = free_port(), free_port()
        files = {"warden.yaml": policy(self.port, self.admin), "revocations.yaml": revocations(False)}
        if layout == "configmap":
            self.volume = ConfigMapVolume(Path(self.tmp) / "config")
            self.volume.write(files)
            self.config = self.volume.path
        else:
            self.volume = None
            self.config = Path(self.tmp) / "config"
            self.config.mkdir()
            for name, text in files.items():
                (self.config / name).write_text(text)
        self.files = files
        self.log = open(Path(self.tmp) / "warden.log", "wb")
        self.proc = subprocess.Popen([BIN, "serve", "--config", self.config, *args],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "WARDEN_LOG": "warn"})
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def write(self, name, text):
        self.files[name] = text
        if self.volume:
            self.volume.write(self.files)
        else:
            tmp = self.config / f".{name}.tmp"
            tmp.write_text(text)
            os.rename(tmp, self.config / name)

    def code(self, key=KEY):
        self.conn.request("POST", "/v1/chat/completions", BODY,
                          {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        r = self.conn.getresponse()
        r.read()
        return r.getheader("x-warden-error") or str(r.status)

    def metric(self, name):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics") as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[-1])
        return 0.0

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_code(server, wanted, timeout=5):
    """Sends requests back to back until one answers `wanted`; returns when (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if server.code() == wanted:
            return time.perf_counter()
    raise RuntimeError(f"no `{wanted}` within {timeout}s")


def latency(layout, trials, args=()):
    server = Server(layout, args)
    samples = []
    try:
        for _ in range(trials):
            # A random pause, so changes do not land in step with the poll timer.
            time.sleep(random.uniform(0, 0.6))
            start = time.perf_counter()
            server.write("revocations.yaml", revocations(True))
            samples.append(wait_code(server, "credential_revoked") - start)
            server.write("revocations.yaml", revocations(False))
            wait_code(server, "200")
    finally:
        server.close()
    samples.sort()
    p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1000  # noqa: E731
    return {"trials": trials, "p50_ms": p(0.50), "p99_ms": p(0.99), "max_ms": samples[-1] * 1000,
            "mean_ms": statistics.mean(samples) * 1000}


def wrk(server, seconds, workdir):
    script = Path(workdir) / "post.lua"
    script.write_text(f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {LOAD_KEY}"
wrk.body = '{BODY}'
""")
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", "-s", script,
                          f"http://127.0.0.1:{server.port}/v1/chat/completions"],
                         capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"requests": total, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "non_2xx": non2xx, "socket_errors": errors}


def under_load(seconds):
    server = Server("dir")
    try:
        quiet = wrk(server, seconds, server.tmp)
        stop = threading.Event()
        writes = [0]

        def rewrite():
            while not stop.is_set():
                writes[0] += 1
                server.write("warden.yaml", policy(server.port, server.admin, f"reload {writes[0]}"))
                time.sleep(0.1)
        before = server.metric('warden_config_reloads_total{result="ok"}')
        writer = threading.Thread(target=rewrite)
        writer.start()
        busy = wrk(server, seconds, server.tmp)
        stop.set()
        writer.join()
        time.sleep(0.5)
        busy["policy_writes"] = writes[0]
        busy["reloads_ok"] = server.metric('warden_config_reloads_total{result="ok"}') - before
        busy["reloads_error"] = server.metric('warden_config_reloads_total{result="error"}')
        return {"without_reloads": quiet, "with_reloads": busy,
                "throughput_ratio": busy["rps"] / quiet["rps"]}
    finally:
        server.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--poll-trials", type=int, default=30)
    parser.add_argument("--load-seconds", type=int, default=10)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk",
                       shell=True, check=True)
    subprocess.run([ROOT / "scripts" / "ensure-build-deps"], check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    results = {
        "revocation latency, atomic rename, watcher": latency("dir", args.trials),
        "revocation latency, ConfigMap ..data swap, watcher": latency("configmap", args.trials),
        "revocation latency, atomic rename, polling only": latency("dir", args.poll_trials, ["--no-watch"]),
        "10 reloads/s under load": under_load(args.load_seconds),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
