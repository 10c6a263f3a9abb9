#!/usr/bin/env bash
# The master's exact CPU under benchmark 6's heartbeats: starts a master, runs heartbeat_sim
# (1,000 simulated servers, one heartbeat each per second) and counts the master's task-clock,
# context switches and system calls with `perf stat` over the middle of the measurement (the
# /proc figure of run.sh counts 10 ms scheduler ticks; this does not). Stops what it started.
#
#   bench/heartbeat_perf.sh [BUILD_DIR]     default: build-bench
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(realpath "${1:-$root/build-bench}")"
seconds=6  # heartbeat_sim's idle baseline and measurement each; perf counts 4 s inside the latter
work="$(mktemp -d /tmp/clupy-hbperf.XXXXXX)"
master=""
cleanup() {
  [ -z "$master" ] || { kill -TERM "$master" 2>/dev/null || true; wait "$master" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
"$build/tools/clupy" --master --port 0 --port-file "$work/port" --token-file "$work/token" \
  --data-dir "$work/data" --log-level warn --registration-ttl 30s >"$work/master.log" 2>&1 &
master=$!
for _ in $(seq 3000); do [ -s "$work/port" ] && break; sleep 0.01; done
[ -s "$work/port" ] || { echo "heartbeat_perf.sh: the master did not start" >&2; exit 1; }
"$build/bench/cluster/heartbeat_sim" "clupy://127.0.0.1:$(cat "$work/port")" "$work/token" \
  "$master" 1000 1000 "$seconds" >"$work/sim.log" 2>&1 &
sim=$!
# Idle baseline, registration (well under a second) and one interval, then count inside the
# measurement.
sleep $((seconds + 2))
perf stat -e task-clock,context-switches,raw_syscalls:sys_enter -p "$master" -- sleep 4 2>&1 |
  grep -E "task-clock|context-switches|raw_syscalls"
wait "$sim" || { cat "$work/sim.log" >&2; exit 1; }
grep '^RESULT' "$work/sim.log"
