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
# path), and an SSE response of 18 events. bare, warden and audited runs alternate ROUNDS times
# per workload (this machine's run-to-run noise is ±10%); the medians are reported: requests/s,
# p50/p99, proxy CPU per request, the ratios to bare Pingora, and Warden's RSS.
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
cargo build --release --quiet --bin warden --example bare_passthrough

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port); bare_port=$(free_port)
warden_port=$(free_port); warden_admin=$(free_port)
audited_port=$(free_port); audited_admin=$(free_port)
baseline_port=$(free_port); baseline_admin=$(free_port)
traced_port=$(free_port); traced_admin=$(free_port)
sampled_port=$(free_port); sampled_admin=$(free_port)

completion='{"id":"chatcmpl-1","object":"chat.completion","created":1732000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Here is the summary you asked for."},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":8,"total_tokens":28}}'
sse=$(python3 - <<'PY'
import json
events = []
for i in range(17):
    events.append({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                   "choices": [{"index": 0, "delta": {"content": f"word{i} "}, "finish_reason": None}]})
events.append({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [],
               "usage": {"prompt_tokens": 20, "completion_tokens": 17, "total_tokens": 37}})
print("".join(f"data: {json.dumps(e, separators=(',', ':'))}\\n\\n" for e in events) + "data: [DONE]\\n\\n", end="")
PY
)
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
    location /sse/ {
      default_type text/event-stream;
      return 200 '$sse';
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
  sse: {base_url: "http://127.0.0.1:$nginx_port/sse/v1", models: ["sse-*"], auth: bearer, api_key_env: BENCH_PROVIDER_KEY}
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
taskset -c 0 target/release/examples/bare_passthrough "127.0.0.1:$bare_port" "127.0.0.1:$nginx_port" > "$work/bare.log" 2>&1 &
bare_pid=$!
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
trap 'kill $bare_pid $warden_pid $audited_pid $baseline_pid $traced_pid $sampled_pid 2>/dev/null; nginx -c "$work/nginx.conf" -s stop 2>/dev/null; rm -rf "$work"' EXIT
for port in $admins; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
done
sleep 1
idle_rss=$(awk '/VmRSS/ {print $2}' /proc/$warden_pid/status)

lua() {  # lua NAME MODEL PROMPT_BYTES [EXTRA_JSON_MEMBERS]
  cat > "$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-agent-key"
wrk.body = '{"model":"$2","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"' .. string.rep("a", $3) .. '"}],"temperature":0.2,"max_tokens":256${4:-}}'
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
  [ "$workload" = stream ] && direct_path=/sse/v1/chat/completions || direct_path=$path
  run warmup "http://127.0.0.1:$warden_port$path" "$workload" "" >/dev/null
  run warmup "http://127.0.0.1:$audited_port$path" "$workload" "" >/dev/null
  run warmup "http://127.0.0.1:$bare_port$direct_path" "$workload" "" >/dev/null
  [ -n "$baseline_pid" ] && run warmup "http://127.0.0.1:$baseline_port$path" "$workload" "" >/dev/null
  [ -n "$traced_pid" ] && run warmup "http://127.0.0.1:$traced_port$path" "$workload" "" >/dev/null
  [ -n "$sampled_pid" ] && run warmup "http://127.0.0.1:$sampled_port$path" "$workload" "" >/dev/null
  echo "$workload direct $(run direct "http://127.0.0.1:$nginx_port$direct_path" "$workload" "")" >> "$results"
  for _ in $(seq "$rounds"); do
    echo "$workload bare $(run bare "http://127.0.0.1:$bare_port$direct_path" "$workload" "$bare_pid")" >> "$results"
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
load_rss=$(awk '/VmRSS/ {print $2}' /proc/$warden_pid/status)
for admin in $admins; do
  echo "Warden on admin port $admin, outcomes other than ok:"
  curl -s "http://127.0.0.1:$admin/metrics" | grep '^warden_requests_total{' | grep -v 'code="ok"' || echo "  none"
  curl -s "http://127.0.0.1:$admin/metrics" | grep '^warden_trace_spans_[a-z_]*\(total\|{reason="[a-z_]*"}\) [1-9]' || true
done

python3 - "$results" "$idle_rss" "$load_rss" "$conns" "$rounds" <<'PY'
import statistics, sys
raw = [line.split() for line in open(sys.argv[1])]
rows = []  # the median of each (workload, run) over its rounds, in first-seen order
for key in dict.fromkeys((r[0], r[1]) for r in raw):
    runs = [r[2:] for r in raw if (r[0], r[1]) == key]
    rows.append([*key, *(f"{statistics.median(float(r[i]) for r in runs):.{1 if i == 4 else 0}f}" for i in range(5))])
names = {"small": "1.2 KB chat completion", "large": "100 KB prompt", "huge": "1 MB prompt (large-body path)",
         "stream": "SSE, 18 events"}
print(f"\n{sys.argv[4]} connections, proxy pinned to one core; CPU = proxy process CPU per request; "
      f"medians of {sys.argv[5]} alternating rounds")
print(f"{'workload':32} {'run':9} {'req/s':>8} {'p50 µs':>8} {'p99 µs':>8} {'non-2xx':>8} {'CPU µs/req':>11} {'vs bare':>8}")
by = {}
for w, run, rps, p50, p99, err, cpu in rows:
    by[(w, run)] = (float(rps), float(cpu))
for w, run, rps, p50, p99, err, cpu in rows:
    bare = by.get((w, "bare"))
    ratio = f"{float(rps) / bare[0]:.2f}x" if bare and run != "bare" else ""
    cpu_s = cpu if run != "direct" else "-"
    print(f"{names[w]:32} {run:9} {rps:>8} {p50:>8} {p99:>8} {err:>8} {cpu_s:>11} {ratio:>8}")
print()
for w in names:
    b, a, n = by.get((w, "bare")), by.get((w, "audited")), by.get((w, "warden"))
    if b and a and n:
        base = by.get((w, "baseline"))
        extra = f", baseline {base[1]:.1f} ({base[0]/b[0]:.2f}x)" if base else ""
        for other in ("traced", "sampled"):
            o = by.get((w, other))
            if o:
                extra += (f", {other} {o[1]:.1f} ({o[0]/b[0]:.2f}x bare, {o[0]/n[0]:.2f}x warden, "
                          f"+{o[1] - n[1]:.1f} µs CPU)")
        print(f"{names[w]:32} warden/bare {n[0]/b[0]:.2f}x, audited/bare {a[0]/b[0]:.2f}x; "
              f"CPU µs/req bare {b[1]:.1f}, warden {n[1]:.1f}, audited {a[1]:.1f}{extra}")
print(f"\nWarden RSS (audit off): idle {int(sys.argv[2]) / 1024:.1f} MiB, after load {int(sys.argv[3]) / 1024:.1f} MiB")
PY
# Stop the audited Warden the way Kubernetes does (SIGTERM): it signs what it wrote with a final
# checkpoint, so `verify --key` covers every record.
kill -TERM "$audited_pid" 2>/dev/null || true
wait "$audited_pid" 2>/dev/null || true
audit_lines=$(cat "$work"/audit/audit.jsonl* | wc -l)
echo "audit records written: $audit_lines; $(target/release/warden audit verify --key "$work/audit.key.pub" "$work/audit")"
