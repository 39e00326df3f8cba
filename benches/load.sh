#!/usr/bin/env bash
# End-to-end throughput, latency and CPU per request, measured in one run on this machine.
#
# The proxy under test is pinned to one core (taskset -c 0); wrk and an nginx upstream share the
# other. For each workload it measures:
#   direct     wrk -> nginx
#   bare       wrk -> bare Pingora passthrough (examples/bare_passthrough.rs, same Pingora) -> nginx
#   warden     wrk -> Warden full path (key, model/endpoint allowlists, rpm + concurrency limits,
#              key swap, usage metering), audit off -> nginx
#   audited    the same with the audit trail on (file sink, signed checkpoints)
# Workloads: a 1.2 KB chat completion, a 100 KB prompt, a 1 MB prompt (Warden's large-body
# path), and an SSE response of 18 events and [DONE], each event written apart as providers
# stream (examples/sse_upstream.rs; nginx's `return` would answer the whole stream in one write,
# and the per-chunk cost would never show). bare, warden and audited runs alternate ROUNDS times
# per workload; the medians are reported with their spread ((max - min) / median over the
# rounds): requests/s, p50/p99, proxy CPU per request, the ratios to bare Pingora, and Warden's
# RSS.
# Warden logs as it would by default (an access line per request, to a file) unless WARDEN_LOG
# says otherwise (`WARDEN_LOG=warn` measures without them); WARDEN_LOG_FORMAT=json is honoured.
# BASELINE_BIN=<another warden binary> adds a `baseline` run of it (audit off, same policy as
# `warden`) to every round: a before/after comparison of two builds in one run.
# TRACING=1 adds `traced` (tracing: sample_ratio 1.0) and `sampled` (0.01) runs, audit off, same
# policy as `warden`; spans go over OTLP/HTTP to the nginx upstream, which answers 200.
# Usage: [WORKLOADS="small large huge stream"] [WARDEN_LOG=warn] [BASELINE_BIN=path] [TRACING=1] benches/load.sh [seconds per run, default 5] [rounds, default 3] [connections, default 64]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
conns=${3:-64}
command -v wrk >/dev/null && command -v nginx >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
}
scripts/ensure-build-deps
cargo build --release --quiet --bin warden --example bare_passthrough --example sse_upstream

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port); bare_port=$(free_port)
sse_port=$(free_port); bare_sse_port=$(free_port)
warden_port=$(free_port); warden_admin=$(free_port)
audited_port=$(free_port); audited_admin=$(free_port)
baseline_port=$(free_port); baseline_admin=$(free_port)
traced_port=$(free_port); traced_admin=$(free_port)
sampled_port=$(free_port); sampled_admin=$(free_port)

completion='{"id":"chatcmpl-1","object":"chat.completion","created":1732000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Here is the summary you asked for."},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":8,"total_tokens":28}}'
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
error_log $work/nginx-error.log;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work;
  client_max_body_size 20m;
  client_body_buffer_size 2m;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port;
    location = /v1/traces {
      return 200 '';
    }
    location / {
      default_type application/json;
      return 200 '$completion';
    }
  }
}
NGINX

hash() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
policy() {  # policy LISTEN ADMIN
  cat <<YAML
version: 1
server: {listen: 127.0.0.1:$1, admin: 127.0.0.1:$2, max_body_bytes: 20971520}
providers:
  sse: {base_url: "http://127.0.0.1:$sse_port/v1", models: ["sse-*"], auth: bearer, api_key_env: BENCH_PROVIDER_KEY}
  fast: {base_url: "http://127.0.0.1:$nginx_port/v1", models: ["*"], auth: bearer, api_key_env: BENCH_PROVIDER_KEY}
agents:
  governed:
    keys: [{id: g, sha256: $(hash bench-agent-key)}]
    models: ["gpt-4o-mini", "sse-model", "claude-sonnet-*"]
    endpoints: ["/v1/chat/completions", "/v1/embeddings"]
    limits: {requests_per_minute: 1000000000, max_concurrent: 10000}
YAML
}
policy "$warden_port" "$warden_admin" > "$work/warden.yaml"
target/release/warden keygen --out "$work/audit.key" >/dev/null
{ policy "$audited_port" "$audited_admin"; cat <<YAML
audit:
  sink: {file: {path: $work/audit/audit.jsonl, max_bytes: 4294967296}}
  spool_dir: $work/spool
  signing_key_file: $work/audit.key
YAML
} > "$work/audited.yaml"

taskset -c 1 nginx -c "$work/nginx.conf"
taskset -c 1 target/release/examples/sse_upstream "127.0.0.1:$sse_port" > "$work/sse.log" 2>&1 &
sse_pid=$!
taskset -c 0 target/release/examples/bare_passthrough "127.0.0.1:$bare_port" "127.0.0.1:$nginx_port" > "$work/bare.log" 2>&1 &
bare_pid=$!
taskset -c 0 target/release/examples/bare_passthrough "127.0.0.1:$bare_sse_port" "127.0.0.1:$sse_port" > "$work/bare-sse.log" 2>&1 &
bare_sse_pid=$!
BENCH_PROVIDER_KEY=sk-bench WARDEN_LOG=${WARDEN_LOG:-info} taskset -c 0 target/release/warden serve --config "$work/warden.yaml" > "$work/warden.log" 2>&1 &
warden_pid=$!
BENCH_PROVIDER_KEY=sk-bench WARDEN_LOG=${WARDEN_LOG:-info} taskset -c 0 target/release/warden serve --config "$work/audited.yaml" > "$work/audited.log" 2>&1 &
audited_pid=$!
baseline_pid=
admins="$warden_admin $audited_admin"
if [ -n "${BASELINE_BIN:-}" ]; then
  policy "$baseline_port" "$baseline_admin" > "$work/baseline.yaml"
  BENCH_PROVIDER_KEY=sk-bench WARDEN_LOG=${WARDEN_LOG:-info} taskset -c 0 "$BASELINE_BIN" serve --config "$work/baseline.yaml" > "$work/baseline.log" 2>&1 &
  baseline_pid=$!
  admins="$admins $baseline_admin"
fi
traced_pid=; sampled_pid=
if [ -n "${TRACING:-}" ]; then
  for run in traced:1.0 sampled:0.01; do
    name=${run%%:*}; port_var=${name}_port; admin_var=${name}_admin
    { policy "${!port_var}" "${!admin_var}"
      echo "tracing: {otlp: {endpoint: \"http://127.0.0.1:$nginx_port\"}, sample_ratio: ${run#*:}}"
    } > "$work/$name.yaml"
    BENCH_PROVIDER_KEY=sk-bench WARDEN_LOG=${WARDEN_LOG:-info} taskset -c 0 target/release/warden serve --config "$work/$name.yaml" > "$work/$name.log" 2>&1 &
    printf -v "${name}_pid" '%s' $!
    admins="$admins ${!admin_var}"
  done
fi
trap 'kill $sse_pid $bare_pid $bare_sse_pid $warden_pid $audited_pid $baseline_pid $traced_pid $sampled_pid 2>/dev/null; nginx -c "$work/nginx.conf" -s stop 2>/dev/null; rm -rf "$work"' EXIT
for port in $admins; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
done
sleep 1
idle_rss=$(awk '/VmRSS/ {print $2}' /proc/$warden_pid/status)

lua() {  # lua NAME MODEL PROMPT_BYTES [EXTRA_JSON_MEMBERS]: the request body and wrk's script
  printf '{"model":"%s","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"%s"}],"temperature":0.2,"max_tokens":256%s}' \
    "$2" "$(head -c "$3" /dev/zero | tr '\0' a)" "${4:-}" > "$work/$1.json"
  cat > "$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-agent-key"
local file = io.open("$work/$1.json", "rb")
wrk.body = file:read("*a")
file:close()
LUA
}
lua small gpt-4o-mini 1060
lua large gpt-4o-mini 102200
lua huge gpt-4o-mini 1048400
# A real streaming request: Warden asks for usage (`stream_options`) and filters the stream.
lua stream sse-model 1060 ',"stream":true'

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run NAME URL SCRIPT PID -> "rps p50_us p99_us non2xx cpu_us_per_request"
run() {
  local before after
  before=$( [ -n "$4" ] && cpu_ticks "$4" || echo 0)
  taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$work/$3.lua" "$2" > "$work/$1.out"
  after=$( [ -n "$4" ] && cpu_ticks "$4" || echo 0)
  python3 - "$work/$1.out" "$((after - before))" "$(getconf CLK_TCK)" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
def us(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    if not m:
        sys.exit(f"cannot read wrk latency {v!r} in:\n{text}")
    n, unit = m.groups()
    return float(n) * {"us": 1, "ms": 1000, "s": 1e6}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
p50 = us(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = us(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
cpu = ticks / hz * 1e6 / total if ticks else 0
print(f"{rps:.0f} {p50:.0f} {p99:.0f} {non2xx.group(1) if non2xx else 0} {cpu:.1f}")
PY
}

results="$work/results"
: > "$results"
for workload in ${WORKLOADS:-small large huge stream}; do
  path=/v1/chat/completions
  upstream=$nginx_port bare=$bare_port bare_process=$bare_pid
  [ "$workload" = stream ] && upstream=$sse_port bare=$bare_sse_port bare_process=$bare_sse_pid
  run warmup "http://127.0.0.1:$warden_port$path" "$workload" "" >/dev/null
  run warmup "http://127.0.0.1:$audited_port$path" "$workload" "" >/dev/null
  run warmup "http://127.0.0.1:$bare$path" "$workload" "" >/dev/null
  [ -n "$baseline_pid" ] && run warmup "http://127.0.0.1:$baseline_port$path" "$workload" "" >/dev/null
  [ -n "$traced_pid" ] && run warmup "http://127.0.0.1:$traced_port$path" "$workload" "" >/dev/null
  [ -n "$sampled_pid" ] && run warmup "http://127.0.0.1:$sampled_port$path" "$workload" "" >/dev/null
  echo "$workload direct $(run direct "http://127.0.0.1:$upstream$path" "$workload" "")" >> "$results"
  for _ in $(seq "$rounds"); do
    echo "$workload bare $(run bare "http://127.0.0.1:$bare$path" "$workload" "$bare_process")" >> "$results"
    echo "$workload warden $(run warden "http://127.0.0.1:$warden_port$path" "$workload" "$warden_pid")" >> "$results"
    echo "$workload audited $(run audited "http://127.0.0.1:$audited_port$path" "$workload" "$audited_pid")" >> "$results"
    if [ -n "$baseline_pid" ]; then
      echo "$workload baseline $(run baseline "http://127.0.0.1:$baseline_port$path" "$workload" "$baseline_pid")" >> "$results"
    fi
    if [ -n "$traced_pid" ]; then
      echo "$workload traced $(run traced "http://127.0.0.1:$traced_port$path" "$workload" "$traced_pid")" >> "$results"
      echo "$workload sampled $(run sampled "http://127.0.0.1:$sampled_port$path" "$workload" "$sampled_pid")" >> "$results"
    fi
  done
done
# Latency at a fixed rate, well below saturation (wrk's latencies are a saturated proxy's):
# PACED_RATE (default 1000, 0 skips) 1.2 KB calls per second over 16 connections, alternating.
paced="$work/paced"
: > "$paced"
if [ "${PACED_RATE:-1000}" != 0 ]; then
  for _ in $(seq "$rounds"); do
    for target in "bare $bare_port" "warden $warden_port" "audited $audited_port"; do
      set -- $target
      echo "$1 $(taskset -c 1 target/release/examples/paced_load "127.0.0.1:$2" /v1/chat/completions \
        "${PACED_RATE:-1000}" "$secs" 16 "$work/small.json" \
        'Content-Type: application/json' 'Authorization: Bearer bench-agent-key')" >> "$paced"
    done
  done
fi
load_rss=$(awk '/VmRSS/ {print $2}' /proc/$warden_pid/status)
for admin in $admins; do
  echo "Warden on admin port $admin, outcomes other than ok:"
  curl -s "http://127.0.0.1:$admin/metrics" | grep '^warden_requests_total{' | grep -v 'code="ok"' || echo "  none"
  curl -s "http://127.0.0.1:$admin/metrics" | grep '^warden_trace_spans_[a-z_]*\(total\|{reason="[a-z_]*"}\) [1-9]' || true
done

python3 - "$results" "$idle_rss" "$load_rss" "$conns" "$rounds" "$paced" "${PACED_RATE:-1000}" <<'PY'
import statistics, sys
raw = [line.split() for line in open(sys.argv[1])]
runs = {}  # (workload, run) -> its rounds, in first-seen order: [rps, p50, p99, non2xx, cpu]
for r in raw:
    runs.setdefault((r[0], r[1]), []).append([float(v) for v in r[2:]])
med = lambda key, i: statistics.median(v[i] for v in runs[key])
def spread(values):  # (max - min) / median, in percent: how far apart the rounds were
    m = statistics.median(values)
    return f"±{(max(values) - min(values)) / m * 50:.0f}%" if m and len(values) > 1 else ""
def ratio(w, run, base, i):  # per-round ratios (rounds alternate): their median and spread
    pairs = [a[i] / b[i] for a, b in zip(runs[(w, run)], runs[(w, base)]) if b[i]]
    return statistics.median(pairs), spread(pairs)
names = {"small": "1.2 KB chat completion", "large": "100 KB prompt", "huge": "1 MB prompt (large-body path)",
         "stream": "SSE, 18 events"}
print(f"\n{sys.argv[4]} connections, proxy pinned to one core; CPU = proxy process CPU per request; "
      f"medians of {sys.argv[5]} alternating rounds, ± half their range over the median")
print(f"{'workload':30} {'run':9} {'req/s':>8} {'':>5} {'p50 µs':>7} {'p99 µs':>7} {'non-2xx':>7} "
      f"{'CPU µs/req':>10} {'':>5} {'vs bare':>7} {'':>5}")
for (w, run), values in runs.items():
    rps = [v[0] for v in values]
    cpu = [v[4] for v in values]
    r, r_spread = ratio(w, run, "bare", 0) if (w, "bare") in runs and run not in ("bare", "direct") else (None, "")
    cpu_s = f"{med((w, run), 4):10.1f} {spread(cpu):>5}" if run != "direct" else f"{'-':>10} {'':>5}"
    print(f"{names[w]:30} {run:9} {med((w, run), 0):8.0f} {spread(rps):>5} {med((w, run), 1):7.0f} "
          f"{med((w, run), 2):7.0f} {med((w, run), 3):7.0f} {cpu_s} "
          f"{f'{r:.2f}x' if r else '':>7} {r_spread:>5}")
print()
for w in names:
    if not all((w, k) in runs for k in ("bare", "warden", "audited")):
        continue
    line = []
    for run in ("warden", "audited", "baseline", "traced", "sampled"):
        if (w, run) in runs:
            tput, tput_spread = ratio(w, run, "bare", 0)
            cpu, cpu_spread = ratio(w, run, "bare", 4)
            line.append(f"{run} {tput:.2f}x {tput_spread} throughput, {cpu:.2f}x {cpu_spread} CPU "
                        f"(+{med((w, run), 4) - med((w, 'bare'), 4):.1f} µs)")
    print(f"{names[w]}, against bare Pingora ({med((w, 'bare'), 4):.1f} µs CPU/req): " + "; ".join(line))
paced = {}
for line in open(sys.argv[6]):
    run, *values = line.split()
    paced.setdefault(run, []).append([float(v) for v in values])
if "bare" in paced:
    print(f"\nAt a fixed {sys.argv[7]} requests/s (1.2 KB, 16 connections), medians of the rounds:")
    print(f"{'run':9} {'requests':>9} {'errors':>7} {'p50 µs':>7} {'p90 µs':>7} {'p99 µs':>7} {'p99.9 µs':>8} {'added p99 µs':>12}")
    for run, values in paced.items():
        m = lambda i: statistics.median(v[i] for v in values)
        added = [a[4] - b[4] for a, b in zip(values, paced["bare"])]
        extra = f"{statistics.median(added):.0f} ({min(added):.0f}..{max(added):.0f})" if run != "bare" else ""
        print(f"{run:9} {m(0):9.0f} {m(1):7.0f} {m(2):7.0f} {m(3):7.0f} {m(4):7.0f} {m(5):8.0f} {extra:>12}")
print(f"\nWarden RSS (audit off): idle {int(sys.argv[2]) / 1024:.1f} MiB, after load {int(sys.argv[3]) / 1024:.1f} MiB")
PY
# Stop the audited Warden the way Kubernetes does (SIGTERM): it signs what it wrote with a final
# checkpoint, so `verify --key` covers every record.
kill -TERM "$audited_pid" 2>/dev/null || true
wait "$audited_pid" 2>/dev/null || true
audit_lines=$(cat "$work"/audit/audit.jsonl* | wc -l)
echo "audit records written: $audit_lines; $(target/release/warden audit verify --key "$work/audit.key.pub" "$work/audit")"
