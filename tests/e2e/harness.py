"""Runs the real `warden` binary on free loopback ports with a policy written for the test."""

import hashlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WARDEN_BIN = os.environ.get("WARDEN_BIN", str(ROOT / "target" / "debug" / "warden"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256_hex(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def run_warden_cli(*args, env=None, timeout=30):
    return subprocess.run([WARDEN_BIN, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


class Warden:
    """A running Warden. `policy` is YAML text without the `server:` section (added here)."""

    def __init__(self, policy, env=None, server_extra=""):
        self.dir = tempfile.TemporaryDirectory(prefix="warden-test-")
        self.port = free_port()
        self.admin_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        server = f"server:\n  listen: 127.0.0.1:{self.port}\n  admin: 127.0.0.1:{self.admin_port}\n{server_extra}"
        self.policy_path = Path(self.dir.name) / "warden.yaml"
        self.policy_path.write_text(policy.replace("version: 1\n", "version: 1\n" + server, 1))
        self.log_path = Path(self.dir.name) / "warden.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([WARDEN_BIN, "serve", "--config", str(self.policy_path)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"warden exited {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.admin + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("warden did not become ready: " + self.log_path.read_text())

    def metrics(self):
        with urllib.request.urlopen(self.admin + "/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.log.close()
        self.dir.cleanup()
        return self.proc.returncode
