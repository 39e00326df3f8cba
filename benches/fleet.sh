#!/usr/bin/env bash
# The fleet (`fleet:`, limits shared through Redis) measured in one run on this machine.
#
# Part 1, throughput: the same agent with a request rate, a token budget and a spend budget, in
# three proxies pinned to one core (wrk, nginx and redis-server share the other):
#   bare    bare Pingora passthrough (examples/bare_passthrough.rs), the floor
#   local   Warden, limits enforced by this Warden alone
#   fleet   Warden with `fleet:`, the same limits drawn as leases from Redis
# bare, local and fleet alternate ROUNDS times; medians of requests/s and CPU per request.
#
# Part 2, fleet-wide overshoot: three Wardens with `fleet:` share one agent's request rate;
# three wrk clients (one per Warden) hammer them for SECONDS; the admitted total is compared
# with what the limit allows in that time (the burst plus the refill).
# Usage: benches/fleet.sh [seconds per run, default 5] [rounds, default 3] [connections, default 64]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
conns=${3:-64}
command -v wrk >/dev/null && command -v nginx >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
}
command -v redis-server >/dev/null || scripts/ensure-test-deps
scripts/ensure-build-deps
cargo build --release --quiet --bin warden --example bare_passthrough

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port); bare_port=$(free_port); redis_port=$(free_port)
completion='{"id":"chatcmpl-1","object":"chat.completion","created":1732000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Here is the summary you asked for."},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":8,"total_tokens":28}}'
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
error_log $work/nginx-error.log;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { default_type application/json; return 200 '$completion'; }
  }
}
NGINX

hash() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
policy() {  # policy LISTEN ADMIN RPM [fleet]
  cat <<YAML
version: 1
server: {listen: 127.0.0.1:$1, admin: 127.0.0.1:$2}
providers:
  fast: {base_url: "http://127.0.0.1:$nginx_port/v1", models: ["*"], auth: bearer, api_key_env: BENCH_PROVIDER_KEY}
pricing:
  gpt-4o-mini: {input: 0.15, output: 0.60}
agents:
  governed:
    keys: [{id: g, sha256: $(hash bench-agent-key)}]
    models: ["gpt-4o-mini"]
    limits: {requests_per_minute: $3, tokens_per_minute: 1000000000000, usd_per_day: 1000000000}
YAML
  [ "${4:-}" = fleet ] && printf 'fleet:\n  redis: {url: "redis://127.0.0.1:%s/0"}\n' "$redis_port"
  return 0
}

pids=()
trap 'kill ${pids[*]} 2>/dev/null; nginx -c "$work/nginx.conf" -s stop 2>/dev/null; rm -rf "$work"' EXIT
taskset -c 1 nginx -c "$work/nginx.conf"
taskset -c 1 redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
pids+=($!)
taskset -c 0 target/release/examples/bare_passthrough "127.0.0.1:$bare_port" "127.0.0.1:$nginx_port" > "$work/bare.log" 2>&1 &
bare_pid=$!; pids+=($bare_pid)
start_warden() {  # start_warden NAME RPM [fleet] -> sets port_NAME, pid_NAME, admin_NAME
  local port admin
  port=$(free_port); admin=$(free_port)
  policy "$port" "$admin" "$2" "${3:-}" > "$work/$1.yaml"
  BENCH_PROVIDER_KEY=sk-bench WARDEN_LOG=warn taskset -c 0 target/release/warden serve --config "$work/$1.yaml" > "$work/$1.log" 2>&1 &
  pids+=($!)
  printf -v "pid_$1" '%s' "$!"; printf -v "port_$1" '%s' "$port"; printf -v "admin_$1" '%s' "$admin"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
}
start_warden local 1000000000
start_warden fleet 1000000000 fleet
sleep 1

cat > "$work/chat.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-agent-key"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' .. string.rep("a", 1060) .. '"}],"max_tokens":256}'
LUA

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() {  # run URL PID -> "rps cpu_us_per_request non2xx"
  local before after
  before=$(cpu_ticks "$2")
  taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" -s "$work/chat.lua" "$1" > "$work/run.out"
  after=$(cpu_ticks "$2")
  python3 - "$work/run.out" "$((after - before))" "$(getconf CLK_TCK)" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"{rps:.0f} {int(sys.argv[2]) / int(sys.argv[3]) * 1e6 / total:.1f} {non2xx.group(1) if non2xx else 0}")
PY
}

results="$work/results"; : > "$results"
run "http://127.0.0.1:$port_fleet/v1/chat/completions" "$pid_fleet" >/dev/null
run "http://127.0.0.1:$port_local/v1/chat/completions" "$pid_local" >/dev/null
for _ in $(seq "$rounds"); do
  echo "bare $(run "http://127.0.0.1:$bare_port/v1/chat/completions" "$bare_pid")" >> "$results"
  echo "local $(run "http://127.0.0.1:$port_local/v1/chat/completions" "$pid_local")" >> "$results"
  echo "fleet $(run "http://127.0.0.1:$port_fleet/v1/chat/completions" "$pid_fleet")" >> "$results"
done
echo "fleet Warden's Redis traffic:"
curl -s "http://127.0.0.1:$admin_fleet/metrics" | grep -E '^warden_fleet_(redis_round_trips_total|lease_refills_total|lease_returns_total|fallbacks_total|mode\{mode="shared"\})' | sed 's/^/  /'
python3 - "$results" "$conns" "$rounds" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {n: [statistics.median(float(r[i]) for r in rows if r[0] == n) for i in (1, 2, 3)] for n in ("bare", "local", "fleet")}
print(f"\n1.2 KB chat completion, {sys.argv[2]} connections, proxy pinned to one core; medians of {sys.argv[3]} alternating rounds")
print(f"{'run':8} {'req/s':>8} {'CPU µs/req':>11} {'non-2xx':>8} {'vs bare':>8}")
for n, (rps, cpu, err) in med.items():
    print(f"{n:8} {rps:>8.0f} {cpu:>11.1f} {err:>8.0f} {rps / med['bare'][0]:>7.2f}x")
print(f"fleet/local: {med['fleet'][0] / med['local'][0]:.3f}x requests/s, CPU {med['fleet'][1]:.1f} vs {med['local'][1]:.1f} µs/req")
PY
kill "$pid_local" "$pid_fleet" 2>/dev/null || true

# Part 2: three Wardens share 6000 requests/minute; each wrk client hammers one of them.
limit=6000
for i in 1 2 3; do start_warden "shared$i" "$limit" fleet; done
sleep 1
while [ "$(( $(date +%s) % 60 ))" -gt 45 ]; do sleep 1; done
started=$(date +%s.%N)
clients=()
for i in 1 2 3; do
  port_var="port_shared$i"
  taskset -c 1 wrk -t1 -c16 -d"${secs}s" -s "$work/chat.lua" "http://127.0.0.1:${!port_var}/v1/chat/completions" > "$work/shared$i.out" &
  clients+=($!)
done
wait "${clients[@]}"
ended=$(date +%s.%N)
admitted=0
for i in 1 2 3; do
  admin_var="admin_shared$i"
  n=$(curl -s "http://127.0.0.1:${!admin_var}/metrics" | awk -F' ' '/^warden_requests_total\{agent="governed".*code="ok"/ {s += $2} END {print s + 0}')
  admitted=$((admitted + n))
done
python3 - "$admitted" "$limit" "$started" "$ended" <<'PY'
import sys
admitted, limit, started, ended = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
elapsed = ended - started
allowed = limit + elapsed * limit / 60  # the burst, plus the refill while the run lasted
bound = 3 * (max(1, limit // 50) + 1)
print(f"\nfleet-wide: 3 Wardens, {limit} requests/minute shared, {elapsed:.1f} s of load: admitted {admitted}, "
      f"the limit allows {allowed:.0f}; overshoot {admitted - allowed:+.0f} (stated bound +{bound}); "
      f"each alone would have admitted up to {3 * allowed:.0f}")
PY
