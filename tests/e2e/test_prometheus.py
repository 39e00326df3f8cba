"""Warden's metrics as Prometheus itself reads them: `promtool check metrics` lints the
exposition, and a real Prometheus server scrapes the admin port and answers queries."""

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest

from conftest import AGENT_KEY, OTHER_KEY
from harness import eventually, free_port

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")


def traffic(warden):
    """One of each kind of outcome, so every per-request family has samples."""
    auth = {"Authorization": f"Bearer {AGENT_KEY}"}
    body = {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(warden.base + "/v1/chat/completions", json=body, headers=auth).status_code == 200
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    assert httpx.post(warden.base + "/v1/chat/completions", json=body, headers=other).status_code == 403
    assert httpx.post(warden.base + "/v1/chat/completions", json=body).status_code == 401


def test_promtool_finds_nothing_to_lint(warden):
    assert PROMTOOL, "promtool is missing: scripts/ensure-test-deps installs Debian's prometheus"
    traffic(warden)
    text = warden.metrics()
    for family in ("warden_requests_total", "warden_tokens_total", "warden_overhead_seconds",
                   "warden_request_duration_seconds", "warden_upstream_duration_seconds",
                   "process_resident_memory_bytes", "process_cpu_seconds_total"):
        assert f"\n{family}" in text, family
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
    assert lint.stdout.decode().strip() == "" and lint.stderr.decode().strip() == ""


def test_overhead_resolves_sub_millisecond(warden):
    traffic(warden)
    buckets = [line for line in warden.metrics().splitlines()
               if line.startswith("warden_overhead_seconds_bucket")]
    bounds = [float(line.split('le="')[1].split('"')[0]) for line in buckets]
    assert len([b for b in bounds if b < 0.001]) >= 5
    # Every request so far took well under a second of Warden's own time.
    count = warden.metric("warden_overhead_seconds_count")
    one_second = next(line for line in buckets if 'le="1"' in line)
    assert count >= 3 and float(one_second.rsplit(" ", 1)[1]) == count


@pytest.fixture
def prometheus(warden):
    assert PROMETHEUS, "prometheus is missing: scripts/ensure-test-deps installs it"
    root = Path(tempfile.mkdtemp(prefix="warden-prometheus-"))
    port = free_port()
    (root / "prometheus.yml").write_text(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: warden
    static_configs:
      - targets: ["127.0.0.1:{warden.admin_port}"]
""")
    log = open(root / "prometheus.log", "wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={root / 'prometheus.yml'}",
                             f"--storage.tsdb.path={root / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    yield f"http://127.0.0.1:{port}", root / "prometheus.log"
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(root, ignore_errors=True)


def query(base, promql):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            answer = json.load(r)
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{promql!r}: {e.read().decode()}")
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_a_real_prometheus_scrapes_warden(warden, prometheus):
    base, log = prometheus
    traffic(warden)

    def scraped():
        try:
            up = query(base, 'up{job="warden"}')
        except OSError:
            raise AssertionError("prometheus not answering yet")
        assert up and up[0]["value"][1] == "1", up
        ok = query(base, 'warden_requests_total{agent="app",model="gpt-4o",code="ok"}')
        assert ok and float(ok[0]["value"][1]) >= 1, ok
        denied = query(base, 'sum(warden_requests_total{code="model_not_allowed"})')
        assert denied and float(denied[0]["value"][1]) >= 1, denied
        overhead = query(base, "warden_overhead_seconds_count")
        assert overhead and float(overhead[0]["value"][1]) >= 3, overhead
    try:
        eventually(scraped, timeout=30)
    except AssertionError:
        raise AssertionError("prometheus never scraped warden: " + log.read_text()[-2000:])


DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRICS_SOURCE = (Path(__file__).resolve().parents[2] / "src/metrics/mod.rs").read_text()


def deployed_queries():
    """Every PromQL expression in the Grafana dashboard and the alert rules."""
    import yaml
    dashboard = json.loads((DEPLOY / "monitoring/warden-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rule = yaml.safe_load((DEPLOY / "monitoring/prometheusrule.yaml").read_text())
    exprs += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    return [e.replace("$__rate_interval", "1m").replace("$agent", ".*") for e in exprs]


def test_dashboard_and_alerts_query_metrics_warden_exports(warden, prometheus):
    import re
    base, _ = prometheus
    traffic(warden)
    exported = warden.metrics()
    queries = deployed_queries()
    assert len(queries) > 20
    for expr in queries:
        query(base, expr)  # Prometheus parses and runs it
        for name in set(re.findall(r"\b((?:warden|process)_[a-z_]+)", expr)):
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            declared = f'"{family}"' in METRICS_SOURCE or f"\n{family}" in exported
            assert declared, f"{name} in {expr!r} is not a metric Warden exports"
