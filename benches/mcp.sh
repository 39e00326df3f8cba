#!/usr/bin/env bash
# The cost of a governed MCP `tools/call`, measured in one run on this machine.
#
# A real MCP server built with the official Python SDK (tests/e2e/mcp_server.py, JSON answers,
# the stateless 2026-07-28 revision) answers `send_email`. The proxy under test is pinned to one
# core (taskset -c 0); wrk and the server share the other. Three paths:
#   direct   wrk -> MCP server
#   bare     wrk -> bare Pingora passthrough (examples/bare_passthrough.rs) -> MCP server
#   warden   wrk -> Warden /mcp/crm (API key, grant, strict JSON-RPC parse, routing headers,
#            argument rules `pattern` + `max_length`, a `per_day` quota reserved, credential
#            swap, answer read for `isError`, audit record to a file) -> MCP server
# Each runs with one connection (added latency: p50/p99 of calls one after another) and with
# 16 (throughput), bare and warden alternating ROUNDS times; medians are printed, with the
# proxy's CPU per call.
# Usage: benches/mcp.sh [seconds per run, default 5] [rounds, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
command -v wrk >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}
python=.venv/bin/python
[ -x "$python" ] || { python3 -m venv .venv && .venv/bin/pip install -q -r tests/e2e/requirements.txt; }
scripts/ensure-build-deps
cargo build --release --quiet --bin warden --example bare_passthrough

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
server_port=$(free_port); bare_port=$(free_port); warden_port=$(free_port); warden_admin=$(free_port)
key_hash=$(printf 'bench-agent-key' | sha256sum | cut -d' ' -f1)
cat > "$work/warden.yaml" <<YAML
version: 1
server: {listen: "127.0.0.1:$warden_port", admin: "127.0.0.1:$warden_admin"}
mcp_servers:
  crm: {url: "http://127.0.0.1:$server_port/mcp", api_key_env: BENCH_MCP_TOKEN}
agents:
  bench:
    keys: [{id: bench-1, sha256: $key_hash}]
    mcp:
      crm:
        tools:
          lookup_customer: {}
          send_email: {arguments: {to: {pattern: "*@example.com"}, body: {max_length: 4000}}, per_day: 4000000000}
audit:
  sink: {file: {path: $work/audit.jsonl, max_bytes: 4294967296}}
  spool_dir: $work/spool
YAML

taskset -c 1 "$python" tests/e2e/mcp_server.py --port "$server_port" --token bench-server-token --json > "$work/server.log" 2>&1 &
server_pid=$!
taskset -c 0 target/release/examples/bare_passthrough "127.0.0.1:$bare_port" "127.0.0.1:$server_port" > "$work/bare.log" 2>&1 &
bare_pid=$!
BENCH_MCP_TOKEN=bench-server-token taskset -c 0 target/release/warden serve --config "$work/warden.yaml" > "$work/warden.log" 2>&1 &
warden_pid=$!
trap 'kill $server_pid $bare_pid $warden_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$warden_admin/readyz" >/dev/null && curl -s -o /dev/null "http://127.0.0.1:$server_port/_seen" && break; sleep 0.1; done

# The call, as the MCP SDK sends it at 2026-07-28. Direct and bare present the server's own
# token; Warden is given the agent's key and swaps it.
call='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_email","arguments":{"to":"ada@example.com","subject":"Invoice","body":"Your invoice for November is attached."},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
lua() {  # lua NAME TOKEN
  cat > "$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Authorization"] = "Bearer $2"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "send_email"
wrk.body = '$call'
LUA
}
lua server bench-server-token
lua agent bench-agent-key

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run URL SCRIPT PID CONNECTIONS -> "rps p50_us p99_us non2xx cpu_us_per_call"
run() {
  local before after
  before=$( [ -n "$3" ] && cpu_ticks "$3" || echo 0)
  taskset -c 1 wrk -t1 -c"$4" -d"${secs}s" --latency -s "$work/$2.lua" "$1" > "$work/out"
  after=$( [ -n "$3" ] && cpu_ticks "$3" || echo 0)
  python3 - "$work/out" "$((after - before))" "$(getconf CLK_TCK)" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
def us(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
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

# Every path must answer the call itself, not an error.
for url in "http://127.0.0.1:$server_port/mcp server" "http://127.0.0.1:$bare_port/mcp server" "http://127.0.0.1:$warden_port/mcp/crm agent"; do
  set -- $url
  token=bench-server-token; [ "$2" = agent ] && token=bench-agent-key
  answer=$(curl -s "$1" -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
    -H "Accept: application/json, text/event-stream" -H "MCP-Protocol-Version: 2026-07-28" \
    -H "Mcp-Method: tools/call" -H "Mcp-Name: send_email" -d "$call")
  case "$answer" in *'"sent to ada@example.com"'*) ;; *) echo "unexpected answer from $1: $answer" >&2; exit 1 ;; esac
done

results="$work/results"
: > "$results"
for conns in 1 16; do
  run "http://127.0.0.1:$warden_port/mcp/crm" agent "" "$conns" > /dev/null
  run "http://127.0.0.1:$bare_port/mcp" server "" "$conns" > /dev/null
  echo "$conns direct $(run "http://127.0.0.1:$server_port/mcp" server "" "$conns")" >> "$results"
  for _ in $(seq "$rounds"); do
    echo "$conns bare $(run "http://127.0.0.1:$bare_port/mcp" server "$bare_pid" "$conns")" >> "$results"
    echo "$conns warden $(run "http://127.0.0.1:$warden_port/mcp/crm" agent "$warden_pid" "$conns")" >> "$results"
  done
done
echo "Warden outcomes:"
curl -s "http://127.0.0.1:$warden_admin/metrics" | grep '^warden_mcp_calls_total{'

python3 - "$results" "$rounds" <<'PY'
import statistics, sys
raw = [line.split() for line in open(sys.argv[1])]
print(f"\nMCP tools/call through an SDK-built server; proxy pinned to one core; medians of {sys.argv[2]} alternating rounds")
print(f"{'conns':>5} {'run':7} {'calls/s':>8} {'p50 µs':>8} {'p99 µs':>8} {'non-2xx':>8} {'CPU µs/call':>12}")
medians = {}
for key in dict.fromkeys((r[0], r[1]) for r in raw):
    runs = [r[2:] for r in raw if (r[0], r[1]) == key]
    m = [statistics.median(float(r[i]) for r in runs) for i in range(5)]
    spread = "" if len(runs) < 2 else f"  (p50 {min(float(r[1]) for r in runs):.0f}–{max(float(r[1]) for r in runs):.0f})"
    medians[key] = m
    print(f"{key[0]:>5} {key[1]:7} {m[0]:8.0f} {m[1]:8.0f} {m[2]:8.0f} {m[3]:8.0f} {m[4]:12.1f}{spread}")
for conns in ("1", "16"):
    d, b, w = (medians[(conns, run)] for run in ("direct", "bare", "warden"))
    print(f"{conns:>5} conns: Warden adds {w[1] - d[1]:.0f} µs p50 / {w[2] - d[2]:.0f} µs p99 over direct "
          f"({w[1] - b[1]:.0f} / {w[2] - b[2]:.0f} over bare Pingora); CPU per call {w[4]:.1f} µs = "
          f"{w[4] / b[4]:.2f}× bare ({b[4]:.1f} µs); throughput {w[0] / b[0]:.2f}× bare")
PY
