#!/usr/bin/env bash
# The service benchmark (docs/services.md, "Performance"): a no-op JSON entry point through a
# published service's front against a static Boost.Beast endpoint answering the same JSON, both
# measured with wrk at fixed concurrency in the same run, alternating, several rounds; then a
# rolling update (republish) under a wrk load, counting failed requests. Every process it
# starts is stopped by PID. Needs wrk (Debian package `wrk`).
#
#   bench/service/run.sh [--build-dir DIR] [--rounds N] [--seconds S] [--connections C]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build_dir="$root/build"
rounds=3
seconds=5
connections=64
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir="$(realpath -m "$2")"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
command -v wrk > /dev/null || { echo "run.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
clupy="$build_dir/tools/clupy"
for f in "$clupy" "$build_dir/bench/service/service_noop" "$build_dir/bench/service/service_static_json"; do
  [ -x "$f" ] || { echo "run.sh: $f is missing: build the targets clupy_cli service_noop service_static_json" >&2; exit 1; }
done

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cd "$work"
"$clupy" --master --port 0 --port-file master.port --data-dir data --token-file token --log-level warn > master.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s master.port ] && break; sleep 0.1; done
url="clupy://127.0.0.1:$(cat master.port)"
for s in s1 s2; do
  "$clupy" --serve --master-url "$url" --token-file token --server-id "$s" --capacity 1 --log-level warn > "$s.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 100); do
  [ "$("$clupy" info --json --master-url "$url" --token-file token | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["servers"]))')" = 2 ] && break
  sleep 0.1
done
front_port=$(free_port)
cat > noop.yaml << YAML
name: noop
binary: $build_dir/bench/service/service_noop
entry_points: [noop]
port: $front_port
bind: 127.0.0.1
replicas: 2
auth: public
YAML
"$clupy" --publish noop.yaml --master-url "$url" --token-file token > /dev/null
static_port=$(free_port)
"$build_dir/bench/service/service_static_json" "$static_port" &
pids+=($!)
sleep 0.3

cat > post.lua << 'LUA'
wrk.method = "POST"
wrk.body = "[1]"
wrk.headers["Content-Type"] = "application/json"
LUA

# One wrk run: prints "req_per_s p50_us p99_us errors".
measure() {
  wrk -t2 -c"$connections" -d"${seconds}s" --latency -s post.lua "http://127.0.0.1:$1/noop" > wrk.out 2>&1
  python3 - wrk.out << 'PY'
import re, sys
text = open(sys.argv[1]).read()
def us(v, unit): return float(v) * {"us": 1, "ms": 1000, "s": 1e6}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = us(*re.search(r"50%\s+([\d.]+)(us|ms|s)", text).groups())
p99 = us(*re.search(r"99%\s+([\d.]+)(us|ms|s)", text).groups())
errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m: errors += sum(int(x) for x in m.groups())
print(f"{rps:.0f} {p50:.0f} {p99:.0f} {errors}")
PY
}

front=()
static=()
for r in $(seq "$rounds"); do
  front+=("$(measure "$front_port")")
  static+=("$(measure "$static_port")")
  echo "round $r: front ${front[-1]}  static ${static[-1]}  (req/s p50_us p99_us errors)" >&2
done

# The rolling update: republish while wrk runs; every non-2xx answer or socket error counts.
wrk -t2 -c"$connections" -d"$((seconds + 4))s" -s post.lua "http://127.0.0.1:$front_port/noop" > rolling.out 2>&1 &
wrk_pid=$!
sleep 2
"$clupy" --publish noop.yaml --master-url "$url" --token-file token > /dev/null 2> republish.err
wait "$wrk_pid"
rolling_requests=$(grep -oP '\d+(?= requests in)' rolling.out)
rolling_failed=$( (grep -oP 'Non-2xx or 3xx responses: \K\d+' rolling.out || echo 0) | head -1)
rolling_socket=$( (grep -oP 'Socket errors: .*' rolling.out || echo "none") | head -1)

python3 - "$rounds" "${front[@]}" "${static[@]}" "$rolling_requests" "$rolling_failed" "$rolling_socket" << 'PY'
import statistics, sys
rounds = int(sys.argv[1])
rows = sys.argv[2:2 + 2 * rounds]
front = [list(map(float, r.split())) for r in rows[:rounds]]
static = [list(map(float, r.split())) for r in rows[rounds:]]
rolling_requests, rolling_failed, rolling_socket = sys.argv[2 + 2 * rounds:]
def col(rows, i): return [r[i] for r in rows]
def fmt(values, unit=""):
    return f"{statistics.median(values):,.0f}{unit} ({min(values):,.0f}-{max(values):,.0f})"
added = [f[1] - s[1] for f, s in zip(front, static)]
print("| measure | service front | static Beast endpoint |")
print("|---|---|---|")
print(f"| requests/s | {fmt(col(front, 0))} | {fmt(col(static, 0))} |")
print(f"| p50 latency | {fmt(col(front, 1), ' us')} | {fmt(col(static, 1), ' us')} |")
print(f"| p99 latency | {fmt(col(front, 2), ' us')} | {fmt(col(static, 2), ' us')} |")
print(f"| failed requests | {fmt(col(front, 3))} | {fmt(col(static, 3))} |")
print(f"\np50 added by the front: {fmt(added, ' us')}; front/static throughput: "
      f"{statistics.median(col(front, 0)) / statistics.median(col(static, 0)):.2f}")
print(f"rolling update under load: {rolling_requests} requests, {rolling_failed} non-2xx, "
      f"socket errors: {rolling_socket}")
PY
