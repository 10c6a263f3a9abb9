#!/usr/bin/env bash
# Where a no-op task's cost goes, per process, in one run (docs/performance.md): starts a master
# and one server of two slots from BUILD_DIR on free loopback ports, runs `task_bench
# throughput N`, and prints tasks/s with, per process (client, master, server, the server's
# workers together): CPU microseconds per task (utime+stime), voluntary context switches per
# task, and, when `perf` can count tracepoints here, system calls per task.
#
#   bench/hops.sh [BUILD_DIR] [N] [MASTER_YAML]
#   bench/hops.sh build-bench 300000
#   bench/hops.sh /tmp/old-build 300000 'assign_ahead: 64'
#
# BUILD_DIR defaults to build-bench (bench/run.sh builds it); a copy of another build works too:
# its libclupy.so is found through LD_LIBRARY_PATH, which the workers inherit. Every process
# started here is stopped by PID.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(realpath -m "${1:-$root/build-bench}")"
tasks="${2:-300000}"
yaml="${3:-}"
export LD_LIBRARY_PATH="$build"
work="$(mktemp -d /tmp/clupy-hops.XXXXXX)"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -z "$yaml" ] || printf '%s\n' "$yaml" >"$work/clupy.master.yaml"
(cd "$work" && exec "$build/tools/clupy" --master --port 0 --port-file "$work/port" \
  --token-file "$work/token" --data-dir "$work/data" --log-level warn) >"$work/master.log" 2>&1 &
master=$!
pids+=("$master")
for _ in $(seq 600); do [ -s "$work/port" ] && break; sleep 0.05; done
url="clupy://127.0.0.1:$(cat "$work/port")"
(cd "$work" && exec "$build/tools/clupy" --serve --master-url "$url" --token-file "$work/token" \
  --server-id s1 --capacity 2 --log-level warn) >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
sleep 1
client() { (cd "$work" && CLUPY_MASTER_URL="$url" CLUPY_TOKEN_FILE="$work/token" "$@"); }
client "$build/bench/cluster/task_bench" throughput 200 >/dev/null  # starts the workers

workers() { ps -o pid= --ppid "$server" | tr -s ' \n' ' '; }
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
switches() {
  local t=0 p f
  for p in "$@"; do
    for f in /proc/"$p"/task/*/status; do
      t=$((t + $(awk '/^voluntary_ctxt_switches/ { print $2 }' "$f" 2>/dev/null || echo 0)))
    done
  done
  echo "$t"
}
counting=0
if perf stat -e raw_syscalls:sys_enter -o /dev/null true 2>/dev/null; then counting=1; fi
if [ "$counting" = 1 ]; then
  perf stat -x, -e raw_syscalls:sys_enter -p "$master" -o "$work/master.sys" & pm=$!
  perf stat -x, -e raw_syscalls:sys_enter -p "$server,$(workers | tr ' ' ',' | sed 's/^,//;s/,$//')" \
    -o "$work/server.sys" & ps_=$!
  sleep 0.3
fi
read -r -a w <<<"$(workers)"
t0=("$(ticks "$master")" "$(ticks "$server")" "$(ticks "${w[@]}")")
c0=("$(switches "$master")" "$(switches "$server")" "$(switches "${w[@]}")")
client_cmd=("$build/bench/cluster/task_bench" throughput "$tasks")
[ "$counting" = 1 ] && client_cmd=(perf stat -x, -e raw_syscalls:sys_enter -o "$work/client.sys" "${client_cmd[@]}")
result="$(client "${client_cmd[@]}" | grep '^RESULT')"
t1=("$(ticks "$master")" "$(ticks "$server")" "$(ticks "${w[@]}")")
c1=("$(switches "$master")" "$(switches "$server")" "$(switches "${w[@]}")")
if [ "$counting" = 1 ]; then kill -INT "$pm" "$ps_"; wait "$pm" "$ps_" 2>/dev/null; fi

hz="$(getconf CLK_TCK)"
per() { awk -v a="$1" -v n="$tasks" -v s="$2" 'BEGIN { printf "%.2f", a * s / n }'; }
syscalls() { [ -s "$work/$1.sys" ] && per "$(grep raw_syscalls "$work/$1.sys" | cut -d, -f1)" 1 || echo "-"; }
echo "$result"
printf '%-8s %12s %14s %14s\n' process "cpu_us/task" "vol_csw/task" "syscalls/task"
printf '%-8s %12s %14s %14s\n' client "$(echo "$result" | sed -n 's/.*client_us_per_task=\([0-9.]*\).*/\1/p')" "-" "$(syscalls client)"
names=(master server workers)
for i in 0 1 2; do
  sys="-"
  [ "$i" = 0 ] && sys="$(syscalls master)"
  [ "$i" = 1 ] && sys="$(syscalls server) (with workers)"
  printf '%-8s %12s %14s %14s\n' "${names[i]}" "$(per $((t1[i] - t0[i])) "$(awk -v h="$hz" 'BEGIN { print 1e6 / h }')")" \
    "$(per $((c1[i] - c0[i])) 1)" "$sys"
done
