#!/usr/bin/env bash
# The network section of the benchmarks (bench/run.sh --only net; docs/benchmarks.md): the same
# measures as benchmarks 1, 2, 6 and 7, with the master, the servers and the client on separate
# hosts of the test bed (tools/testbed.sh: network namespaces on a bridge, each with its own root
# filesystem holding only the .deb built from BUILD_DIR). Needs root.
#
#   bench/network.sh BUILD_DIR RESULTS RUNS
#
# Appends "net CONFIG key=value ..." lines to RESULTS, one per run:
#   net rtt=0        no-op throughput and sequential round trips, a master host, one server host
#                    of two slots, the client on the main host: nothing between them but the bridge
#   net rtt=0-relay  the same through the delaying relay with no delay (what the relay costs)
#   net rtt=0.5      0.5 ms more round trip on each of the master's links (relay, 250 us each way)
#   net rtt=2        2 ms more round trip (1 ms each way)
#   net raw-rtt=...  a raw 64-byte ping-pong over the same relays (main -> master host -> server
#                    host's echo and back): the network as the relays make it
#   net servers=8    no-op throughput over 8 server hosts of two slots; the master's CPU per task
#   net payload      1 MiB tasks in and out between hosts
# Sizes: BENCH_NET_TASKS (default 100000), BENCH_NET_ROUND_TRIPS (2000; 500 with delay),
# BENCH_NET_PAYLOADS (300).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -eq 3 ] || { sed -n '7p' "$0" >&2; exit 2; }
build_dir="$(realpath "$1")" results="$(realpath -m "$2")" runs="$3"
tasks="${BENCH_NET_TASKS:-100000}"
round_trips="${BENCH_NET_ROUND_TRIPS:-2000}"
delayed_round_trips=$((round_trips / 4 > 0 ? round_trips / 4 : 1))
payloads="${BENCH_NET_PAYLOADS:-300}"

version="$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build_dir/CMakeCache.txt")"
export BED_SOURCE_DIR="$root" BED_BUILD_DIR="$build_dir"
export BED_DEB="$build_dir/packages/clupy_${version}_amd64.deb"
export BED_CLIENT="$build_dir/bench/cluster/task_bench" BED_RELAY="$build_dir/tools/clupy_testbed_relay"
for exe in "$BED_CLIENT" "$BED_RELAY" "$build_dir/tools/clupy"; do
  [ -x "$exe" ] || { echo "network.sh: $exe is missing (build it first)" >&2; exit 1; }
done
if [ ! -s "$BED_DEB" ] || [ "$BED_DEB" -ot "$build_dir/tools/clupy" ]; then
  # The package holds every installed file: all targets, not only those run.sh needs.
  (cd "$build_dir" && cmake --build . >"$build_dir/cpack.log" 2>&1 &&
    cpack -G DEB -B "$build_dir/packages" >>"$build_dir/cpack.log" 2>&1) ||
    { cat "$build_dir/cpack.log" >&2; echo "network.sh: cpack -G DEB failed" >&2; exit 1; }
fi
touch "$results"
lines_before="$(wc -l <"$results")"
source "$root/tests/bed/common.sh"  # the bed is up from here; its EXIT trap removes it

fail() { scenario_fail "$@"; }
# bench CONFIG LOG MODE ARGS...: one task_bench run from the main host; its RESULT line recorded.
bench() {
  local config="$1" log="$2" line
  shift 2
  run_client "$log" "$BED_CLIENT" "$@" || fail "task_bench $* failed ($config)"
  line="$(grep '^RESULT ' "$BED_SHARED/logs/$log.log" | tail -1)" ||
    fail "no RESULT line from task_bench $*"
  echo "net $config ${line#RESULT } ${EXTRA:-}" >>"$results"
  echo "  [net $config] ${line#RESULT } ${EXTRA:-}"
}
# The master's pid as the main host sees it (the host runs it as the clupy user, under runuser).
master_pid() {
  local pid
  for pid in $(ip netns pids "$(bed_ns "$MASTER_HOST")"); do
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = clupy ]; then echo "$pid"; return 0; fi
  done
  return 1
}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
us_per_task() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }'; }
# throughput CONFIG TASKS: no-op throughput, with the master's CPU per task beside it.
throughput() {
  local pid before
  pid="$(master_pid)" || fail "no master process on the master host"
  before="$(ticks "$pid")"
  EXTRA="" bench "$1" "$1-noop" throughput "$2"
  sed -i '$ s/$/ master_us_per_task='"$(us_per_task $(($(ticks "$pid") - before)) "$2")"'/' "$results"
}
stop_servers() {
  local name
  for name in "$@"; do bed_signal "$name" TERM; done
  none() { [ "$(connected_servers)" -eq 0 ]; }
  bed_wait_for "the servers to stop" 30 none
}

start_master
start_server s1 11 "capacity: 2"
bed_wait_for "the server registered" 30 servers_connected_at_least 1
echo "net: a master host, a server host of two slots, the client on the main host"
for ((r = 1; r <= runs; r++)); do
  throughput rtt=0 "$tasks"
  bench rtt=0 "rtt0-seq" roundtrip "$round_trips"
  bench payload payload payload "$payloads" $((1 << 20))
done

# Delays: relays in the master host on both of its links (servers', client's), one pair per delay.
# Beside them, what the relays alone cost: a raw 64-byte ping-pong from the main host over the
# same two delayed hops (main -> relay on the master host -> relay there -> an echo on the
# server host), so that the time a call spends beyond the network is read against the network
# as the relays make it (their wake-ups land some tens of microseconds after the release time).
start_echo() {  # on s1 (whose processes stop_servers stops)
  nsenter --net="/run/netns/$(bed_ns s1)" "$BED_RELAY" --echo "$(bed_addr s1):7950" \
    </dev/null >"$BED_SHARED/logs/echo-s1.log" 2>&1 {BED_LOCK_FD}>&- &
  disown $!
  bed_wait_for "the echo on s1" 10 grep -q READY "$BED_SHARED/logs/echo-s1.log"
}
port=7900
for delay in 0 250 1000; do
  case "$delay" in 0) config=rtt=0-relay ;; 250) config=rtt=0.5 ;; *) config=rtt=2 ;; esac
  start_relay master "$port" "127.0.0.1:$MASTER_PORT" "$delay"
  start_relay master $((port + 1)) "127.0.0.1:$MASTER_PORT" "$delay"
  start_relay master $((port + 3)) "$(bed_addr s1):7950" "$delay"
  start_relay master $((port + 2)) "$(bed_addr master):$((port + 3))" "$delay"
  stop_servers s1
  start_echo
  SERVER_MASTER_URL="clupy://$(bed_addr master):$port" start_server s1 11 "capacity: 2"
  bed_wait_for "the server registered through the relay" 30 servers_connected_at_least 1
  trips=$round_trips
  [ "$delay" = 0 ] || trips=$delayed_round_trips
  echo "net: $config (relay delay ${delay} us each way)"
  for ((r = 1; r <= runs; r++)); do
    CLIENT_MASTER_URL="clupy://$(bed_addr master):$((port + 1))" throughput "$config" "$tasks"
    CLIENT_MASTER_URL="clupy://$(bed_addr master):$((port + 1))" \
      bench "$config" "$config-seq" roundtrip "$trips"
    line="$("$BED_RELAY" --ping "$(bed_addr master):$((port + 2))" "$trips" 64)" ||
      fail "the raw ping-pong over the relays failed ($config)"
    echo "net raw-$config ${line#RESULT }" >>"$results"
    echo "  [net raw-$config] ${line#RESULT }"
  done
  port=$((port + 4))
done

stop_servers s1
echo "net: 8 server hosts of two slots"
for ((n = 1; n <= 8; n++)); do start_server "s$n" $((10 + n)) "capacity: 2"; done
bed_wait_for "8 servers registered" 60 servers_connected_at_least 8
for ((r = 1; r <= runs; r++)); do throughput servers=8 "$tasks"; done
for config in rtt=0 rtt=0-relay rtt=0.5 rtt=2 raw-rtt=0-relay raw-rtt=0.5 raw-rtt=2 servers=8 payload; do
  expected=$runs
  case "$config" in rtt=*) expected=$((runs * 2)) ;; esac  # a throughput and a round-trip line
  found="$(tail -n +$((lines_before + 1)) "$results" | grep -c "^net $config " || true)"
  [ "$found" -ge "$expected" ] || fail "$found result line(s) for net $config, not $expected"
done
echo "net: done"
