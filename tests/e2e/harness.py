"""Runs the real `warden` binary on free loopback ports with a policy written for the test."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
WARDEN_BIN = os.environ.get("WARDEN_BIN", str(ROOT / "target" / "debug" / "warden"))


_HANDED_OUT = set()


def free_port():
    """A port nobody listens on, never the same twice in this run: Pingora binds with
    SO_REUSEPORT, so two Wardens given one port would both start and split its connections."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def sha256_hex(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def eventually(check, timeout=5):
    """Runs `check` (a function that asserts) until it passes. A request's metrics are recorded
    in Pingora's `logging` phase, just *after* its last response byte reaches the client, so a
    test that reads /metrics right after a response may be a moment early."""
    deadline = time.time() + timeout
    while True:
        try:
            return check()
        except (AssertionError, KeyError, ValueError):
            if time.time() > deadline:
                raise
            time.sleep(0.02)


def audit_record(log, request_id, timeout=10):
    """The audit record of `request_id` (Warden's id, or the client's own `X-Request-ID`) in the
    file sink `log`, once the shipper has written it (it batches every 50 ms, after the
    request's last byte)."""
    import json
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                record = json.loads(line)
                if request_id in (record.get("request_id"), record.get("client_request_id")):
                    return record
        time.sleep(0.05)
    raise AssertionError(f"no audit record for {request_id}")


def run_warden_cli(*args, env=None, timeout=30):
    return subprocess.run([WARDEN_BIN, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


class ConfigMapVolume:
    """A directory laid out the way the kubelet mounts a ConfigMap, updated the way it updates one.

    Each visible `name` is a symlink to `..data/name`; `..data` is a symlink to a hidden,
    timestamped directory. An update writes a new timestamped directory, points `..data_tmp`
    at it and renames `..data_tmp` over `..data` (atomic), then removes the old directory —
    the files themselves are never written in place.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.mkdir()
        self.generation = 0

    def write(self, files):
        self.generation += 1
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{time.time_ns() % 10**9:09d}{self.generation}"
        data = self.path / stamp
        data.mkdir()
        for name, text in files.items():
            (data / name).write_text(text)
        old = os.readlink(self.path / "..data") if (self.path / "..data").is_symlink() else None
        tmp = self.path / "..data_tmp"
        os.symlink(stamp, tmp)
        os.rename(tmp, self.path / "..data")
        for name in files:
            link = self.path / name
            if not link.is_symlink():
                os.symlink(f"..data/{name}", link)
        for link in self.path.iterdir():
            if link.is_symlink() and not link.name.startswith("..") and link.name not in files:
                link.unlink()
        if old:
            for f in (self.path / old).iterdir():
                f.unlink()
            (self.path / old).rmdir()


class Warden:
    """A running Warden. `policy` is YAML text without the `server:` section (added here).

    `layout` is how the policy reaches it: `file` (one file, `--config FILE`), `dir` (a
    directory of files) or `configmap` (a directory laid out as a mounted ConfigMap). `files`
    are further policy files for the directory layouts. `update()` changes the policy live.
    """

    def __init__(self, policy, env=None, server_extra="", layout="file", files=None, args=()):
        self.dir = tempfile.TemporaryDirectory(prefix="warden-test-")
        self.port = free_port()
        self.admin_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.server = f"server:\n  listen: 127.0.0.1:{self.port}\n  admin: 127.0.0.1:{self.admin_port}\n{server_extra}"
        self.layout = layout
        root = Path(self.dir.name)
        if layout == "file":
            self.policy_path = root / "warden.yaml"
            self.config_path = self.policy_path
        elif layout == "dir":
            self.config_path = root / "config"
            self.config_path.mkdir()
            self.policy_path = self.config_path / "warden.yaml"
        else:
            self.volume = ConfigMapVolume(root / "config")
            self.config_path = self.volume.path
            self.policy_path = self.config_path / "warden.yaml"
        self.update({"warden.yaml": policy, **(files or {})}, how="create")
        self.log_path = root / "warden.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([WARDEN_BIN, "serve", "--config", str(self.config_path), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        self._wait_ready()

    def update(self, files, how="rename"):
        """Writes policy files: `rename` (write a temporary file, rename it over the old one),
        `inplace` (truncate and rewrite the same inode), or the ConfigMap swap for that layout.
        `warden.yaml` gets the test's `server:` section."""
        files = {name: (self._with_server(text) if name == "warden.yaml" else text)
                 for name, text in files.items()}
        if self.layout == "configmap":
            current = {p.name: p.read_text() for p in self.config_path.iterdir()
                       if not p.name.startswith("..")} if how != "create" else {}
            self.volume.write({**current, **files})
            return
        for name, text in files.items():
            path = self.policy_path.parent / name
            if how == "rename":
                tmp = path.parent / f".{name}.tmp"
                tmp.write_text(text)
                os.rename(tmp, path)
            else:
                with open(path, "r+" if path.exists() else "w") as f:
                    f.truncate(0)
                    f.write(text)

    def _with_server(self, policy):
        return policy.replace("version: 1\n", "version: 1\n" + self.server, 1)

    def _wait_ready(self):
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"warden exited {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.admin + "/readyz", timeout=1) as r:
                    if r.status == 200 and self._proxy_accepts():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("warden did not become ready: " + self.log_path.read_text())

    def _proxy_accepts(self):
        """Pingora starts its services on separate threads: the admin port can answer before
        the proxy port listens."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def metrics(self):
        with urllib.request.urlopen(self.admin + "/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name, labels=""):
        """The value of one sample, e.g. metric("warden_config_reloads_total", 'result="ok"')."""
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in self.metrics().splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.log.close()
        self.dir.cleanup()
        return self.proc.returncode


def chat_body(model="gpt-4o-mini", **fields):
    """A one-message chat completion request for `model`, with `fields` added."""
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}


def post(warden, key, body=None, path="/v1/chat/completions", headers=None, raw=None, timeout=10, **kw):
    """POSTs `body` as JSON (or the bytes `raw`) to `warden` (anything with a `base` URL) as the
    agent holding `key` (no credential when `key` is None); the body defaults to a chat."""
    sent = {"Authorization": f"Bearer {key}"} if key else {}
    if raw is None:
        raw = json.dumps(chat_body() if body is None else body).encode()
        sent["Content-Type"] = "application/json"
    sent.update(headers or {})
    return httpx.post(warden.base + path, content=raw, headers=sent, timeout=timeout, **kw)


def chat(warden, key, model="gpt-4o-mini", **kw):
    """POSTs a one-message chat for `model` as the agent holding `key`."""
    return post(warden, key, chat_body(model), **kw)
