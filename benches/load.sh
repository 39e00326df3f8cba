#!/usr/bin/env bash
# End-to-end throughput and latency, measured in one run on this machine:
#   direct       wrk -> nginx (a fast upstream answering a fixed chat completion)
#   passthrough  wrk -> Warden -> nginx, agent with models ["*"], no endpoint list, no limits
#   full         wrk -> Warden -> nginx, agent with model/endpoint allowlists, rpm and concurrency
#   audited      the full path on a second Warden whose policy adds the audit trail (file sink,
#                signed checkpoints); full and audited alternate twice to even out noise
# Every request is a POST of a ~300 B chat completion with an agent key. Prints requests/s,
# p50/p99 under load (32 connections) and unloaded (1 connection), the ratios, and idle RSS.
# Usage: benches/load.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
command -v wrk >/dev/null && command -v nginx >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
}
scripts/ensure-build-deps
cargo build --release --quiet

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port); warden_port=$(free_port); admin_port=$(free_port)

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
error_log $work/nginx-error.log;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      default_type application/json;
      return 200 '{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":1,"total_tokens":21}}';
    }
  }
}
NGINX

hash() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
cat > "$work/warden.yaml" <<YAML
version: 1
server: {listen: 127.0.0.1:$warden_port, admin: 127.0.0.1:$admin_port}
providers:
  fast: {base_url: "http://127.0.0.1:$nginx_port/v1", models: ["*"], auth: bearer, api_key_env: BENCH_PROVIDER_KEY}
agents:
  passthrough:
    keys: [{id: p, sha256: $(hash bench-passthrough-key)}]
    models: ["*"]
  governed:
    keys: [{id: g, sha256: $(hash bench-full-key)}]
    models: ["gpt-4o-mini", "claude-sonnet-*"]
    endpoints: ["/v1/chat/completions", "/v1/embeddings"]
    limits: {requests_per_minute: 1000000000, max_concurrent: 10000}
YAML

audited_port=$(free_port); audited_admin=$(free_port)
target/release/warden keygen --out "$work/audit.key" >/dev/null
sed -e "s/listen: 127.0.0.1:$warden_port, admin: 127.0.0.1:$admin_port/listen: 127.0.0.1:$audited_port, admin: 127.0.0.1:$audited_admin/" "$work/warden.yaml" > "$work/audited.yaml"
cat >> "$work/audited.yaml" <<YAML
audit:
  sink: {file: {path: $work/audit/audit.jsonl, max_bytes: 1073741824}}
  spool_dir: $work/spool
  signing_key_file: $work/audit.key
YAML

nginx -c "$work/nginx.conf"
BENCH_PROVIDER_KEY=sk-bench WARDEN_LOG=warn target/release/warden serve --config "$work/warden.yaml" > "$work/warden.log" 2>&1 &
warden_pid=$!
BENCH_PROVIDER_KEY=sk-bench WARDEN_LOG=warn target/release/warden serve --config "$work/audited.yaml" > "$work/audited.log" 2>&1 &
audited_pid=$!
trap 'kill $warden_pid $audited_pid 2>/dev/null; nginx -c "$work/nginx.conf" -s stop 2>/dev/null; rm -rf "$work"' EXIT
for port in $admin_port $audited_admin; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
done
sleep 1
idle_rss=$(awk '/VmRSS/ {print $2}' /proc/$warden_pid/status)

lua() {
  cat > "$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $2"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the incident report in three bullet points, please."}],"temperature":0.2,"max_tokens":256}'
LUA
}
lua passthrough bench-passthrough-key
lua full bench-full-key

# run NAME URL SCRIPT CONNECTIONS -> "rps p50_us p99_us"
run() {
  wrk -t1 -c"$4" -d"${secs}s" --latency -s "$work/$3.lua" "$2" > "$work/$1.out"
  python3 - "$work/$1.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def us(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    if not m:
        sys.exit(f"cannot read wrk latency {v!r} in:\n{text}")
    n, unit = m.groups()
    return float(n) * {"us": 1, "ms": 1000, "s": 1e6}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = us(re.search(r"50%\s+(\S+)", text).group(1))
p99 = us(re.search(r"99%\s+(\S+)", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"{rps:.0f} {p50:.0f} {p99:.0f} {non2xx.group(1) if non2xx else 0}")
PY
}

direct="http://127.0.0.1:$nginx_port/v1/chat/completions"
proxied="http://127.0.0.1:$warden_port/v1/chat/completions"
run warmup "$proxied" full 8 >/dev/null
read -r d_rps d_p50 d_p99 d_err <<<"$(run direct "$direct" passthrough 32)"
read -r p_rps p_p50 p_p99 p_err <<<"$(run passthrough "$proxied" passthrough 32)"
read -r f_rps f_p50 f_p99 f_err <<<"$(run full "$proxied" full 32)"
audited="http://127.0.0.1:$audited_port/v1/chat/completions"
run warmup "$audited" full 8 >/dev/null
read -r a_rps a_p50 a_p99 a_err <<<"$(run audited "$audited" full 32)"
read -r f2_rps _ _ _ <<<"$(run full2 "$proxied" full 32)"
read -r a2_rps _ _ _ <<<"$(run audited2 "$audited" full 32)"
read -r d1_rps d1_p50 d1_p99 _ <<<"$(run direct1 "$direct" passthrough 1)"
read -r f1_rps f1_p50 f1_p99 _ <<<"$(run full1 "$proxied" full 1)"
load_rss=$(awk '/VmRSS/ {print $2}' /proc/$warden_pid/status)

printf '\n%-22s %10s %9s %9s %8s\n' "run (32 connections)" "req/s" "p50 µs" "p99 µs" "non-2xx"
printf '%-22s %10s %9s %9s %8s\n' direct "$d_rps" "$d_p50" "$d_p99" "$d_err"
printf '%-22s %10s %9s %9s %8s\n' "warden passthrough" "$p_rps" "$p_p50" "$p_p99" "$p_err"
printf '%-22s %10s %9s %9s %8s\n' "warden full path" "$f_rps" "$f_p50" "$f_p99" "$f_err"
printf '%-22s %10s %9s %9s %8s\n' "warden full + audit" "$a_rps" "$a_p50" "$a_p99" "$a_err"
printf '\n%-22s %10s %9s %9s\n' "run (1 connection)" "req/s" "p50 µs" "p99 µs"
printf '%-22s %10s %9s %9s\n' direct "$d1_rps" "$d1_p50" "$d1_p99"
printf '%-22s %10s %9s %9s\n' "warden full path" "$f1_rps" "$f1_p50" "$f1_p99"
python3 - <<PY
print()
print(f"full / passthrough throughput: {$f_rps / $p_rps:.3f}x")
print(f"passthrough / direct throughput: {$p_rps / $d_rps:.3f}x")
print(f"full / direct throughput: {$f_rps / $d_rps:.3f}x")
print(f"audit on / off throughput (two alternating runs each: off {$f_rps:.0f}, {$f2_rps:.0f}; on {$a_rps:.0f}, {$a2_rps:.0f}): {($a_rps + $a2_rps) / ($f_rps + $f2_rps):.3f}x")
print(f"added p50 latency, unloaded (full - direct): {$f1_p50 - $d1_p50:.0f} µs")
print(f"RSS: idle {$idle_rss / 1024:.1f} MiB, after load {$load_rss / 1024:.1f} MiB")
PY
audit_lines=$(cat "$work"/audit/audit.jsonl* | wc -l)
echo "audit records written: $audit_lines; $(target/release/warden audit verify --key "$work/audit.key.pub" "$work/audit")"
