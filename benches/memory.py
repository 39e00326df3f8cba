#!/usr/bin/env python3
"""Warden's memory with a big policy: RSS idle, after load has touched every agent, and after a
/metrics scrape.

Writes a policy of N agents (default 10 000), each with its own API key, a model allowlist and
request/concurrency limits, served by the built-in mock provider; starts the release binary;
sends one chat completion as every agent (4 client threads, keep-alive) and reads VmRSS from
/proc at each step.

Usage: benches/memory.py [agents, default 10000] [requests per agent, default 1]
"""

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "target" / "release" / "warden"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main():
    agents = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    per_agent = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "warden"], cwd=ROOT, check=True)
    port, admin = free_port(), free_port()
    lines = ["version: 1", f"server: {{listen: 127.0.0.1:{port}, admin: 127.0.0.1:{admin}}}",
             "providers:", "  local: {kind: mock, models: [\"mock-*\"]}", "agents:"]
    for i in range(agents):
        digest = hashlib.sha256(f"agent-key-{i}".encode()).hexdigest()
        lines += [f"  agent-{i}:",
                  f"    keys: [{{id: k{i}, sha256: {digest}}}]",
                  "    models: [\"mock-small\", \"mock-large\"]",
                  "    limits: {requests_per_minute: 1000, max_concurrent: 4}"]
    with tempfile.TemporaryDirectory() as work:
        policy = Path(work) / "warden.yaml"
        policy.write_text("\n".join(lines) + "\n")
        proc = subprocess.Popen([str(BIN), "serve", "--config", str(policy)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "WARDEN_LOG": "warn"})
        try:
            deadline = time.time() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1)
                    break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise RuntimeError("warden did not start")
                    time.sleep(0.1)
            time.sleep(1)
            idle = rss_mib(proc.pid)

            body = json.dumps({"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]})
            failures = []

            def client(offset):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                for i in range(offset, agents, 4):
                    for _ in range(per_agent):
                        conn.request("POST", "/v1/chat/completions", body,
                                     {"Authorization": f"Bearer agent-key-{i}", "Content-Type": "application/json"})
                        r = conn.getresponse()
                        r.read()
                        if r.status != 200:
                            failures.append(r.status)

            started = time.time()
            threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.time() - started
            loaded = rss_mib(proc.pid)
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=30) as r:
                series = sum(1 for line in r.read().decode().splitlines()
                             if line.startswith("warden_requests_total{"))
            scraped = rss_mib(proc.pid)
        finally:
            proc.kill()
            proc.wait()
    print(f"{agents} agents, {agents * per_agent} requests in {elapsed:.1f} s "
          f"({len(failures)} not 200), {series} warden_requests_total series")
    print(f"RSS: idle {idle:.1f} MiB, after touching every agent {loaded:.1f} MiB, "
          f"after a /metrics scrape {scraped:.1f} MiB")


if __name__ == "__main__":
    main()
