#!/usr/bin/env bash
# The CluPy benchmark suite in one command (docs/benchmarks.md): builds in Release, starts each
# configuration's daemons as processes on free loopback ports, runs every benchmark several
# times, and writes a table (stdout and docs/benchmarks.md, "Latest results") and JSON
# (bench/results/latest.json). Every process it starts is stopped by PID, also on failure.
#
#   bench/run.sh                 the whole suite (6-12 minutes on 2 shared cores)
#   bench/run.sh --only "1 2"    some benchmarks (ids 1-10, "raw" for the transport floor, "net"
#                                for the network section on the test bed: bench/network.sh, root)
#   bench/run.sh --quick         a smoke run: tiny sizes, 1 run, writes nothing into the repo
#
# Options: --runs N (default 5), --no-build, --build-dir DIR, --json FILE, --no-docs.
# Sizes: BENCH_TASKS (benchmark 1, default 1000000), BENCH_ROUND_TRIPS (20000),
# BENCH_PRIMES ("LO HI", default "20000000 20000300"), BENCH_PAYLOADS (1000),
# BENCH_QUEUED (1000000), BENCH_SCALE_TASKS (50000), BENCH_SIM_SERVERS (1000),
# BENCH_DASK_TASKS (10000), BENCH_DASK_ROUND_TRIPS (500), BENCH_CHAIN ("STAGES BYTES", default
# "100 4194304"), BENCH_TREE ("LEAVES BYTES", default "256 4194304").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

runs=5
build=1
quick=0
docs=1
only="raw 1 2 3 4 5 6 7 8 9 10 net"
build_dir="$root/build-bench"
json="$root/bench/results/latest.json"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --no-build) build=0; shift ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --json) json="$2"; shift 2 ;;
    --no-docs) docs=0; shift ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done

build_dir="$(realpath -m "$build_dir")"  # processes start in their own directories
tasks="${BENCH_TASKS:-1000000}"
round_trips="${BENCH_ROUND_TRIPS:-20000}"
primes_range="${BENCH_PRIMES:-20000000 20000300}"
payloads="${BENCH_PAYLOADS:-1000}"
payload_bytes=$((1 << 20))
queued="${BENCH_QUEUED:-1000000}"
scale_tasks="${BENCH_SCALE_TASKS:-50000}"
sim_servers="${BENCH_SIM_SERVERS:-1000}"
sim_seconds=4
dask_tasks="${BENCH_DASK_TASKS:-10000}"
dask_round_trips="${BENCH_DASK_ROUND_TRIPS:-500}"
chain_sizes="${BENCH_CHAIN:-100 4194304}"
tree_sizes="${BENCH_TREE:-256 4194304}"
if [ "$quick" = 1 ]; then
  runs=1 docs=0 json="" tasks=2000 round_trips=200 primes_range="1000000 1000020" payloads=20
  queued=5000 scale_tasks=1000 sim_servers=20 sim_seconds=1 dask_tasks=200 dask_round_trips=20
  chain_sizes="10 65536" tree_sizes="16 65536"
fi

if [ "$build" = 1 ]; then
  # Warnings are not errors here: GCC 12 at -O3 reports a false -Wrestrict in libclupy.
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCLUPY_BUILD_BENCH=ON \
    -DCLUPY_BUILD_TESTS=OFF -DCLUPY_WERROR=OFF >/dev/null
  ninja -C "$build_dir" -j2 clupy_cli task_bench raw_transport heartbeat_sim clupy_testbed_relay \
    >/dev/null
fi
clupy="$build_dir/tools/clupy"
task_bench="$build_dir/bench/cluster/task_bench"
raw_transport="$build_dir/bench/cluster/raw_transport"
heartbeat_sim="$build_dir/bench/cluster/heartbeat_sim"
for exe in "$clupy" "$task_bench" "$raw_transport" "$heartbeat_sim"; do
  [ -x "$exe" ] || { echo "run.sh: $exe is missing (build first, or drop --no-build)" >&2; exit 1; }
done

work="$(mktemp -d /tmp/clupy-bench.XXXXXX)"
results="$work/results.txt"
: >"$results"
pids=()
dir="$work" url="" token="" master_pid=""

# Stops one process we started: SIGTERM (servers then stop their workers and say goodbye),
# SIGKILL after 10 s.
# stop_pid PID [GRACE_SECONDS]: SIGTERM, then SIGKILL after the grace (10 s by default).
stop_pid() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < ${2:-10} * 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  # network.sh ends its current step before its trap removes the test bed: give it time, since
  # a SIGKILL would leave the bed to the next run's start.
  for pid in "${pids[@]}"; do stop_pid "$pid" "$([ "$pid" = "${net_pid:-}" ] && echo 180 || echo 10)"; done
  pids=()
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# spawn DIR LOG CMD...: starts CMD in DIR in the background; its PID lands in $spawned.
spawn() {
  local dir="$1" log="$2"
  shift 2
  (cd "$dir" && exec "$@") >"$log" 2>&1 &
  spawned=$!
  pids+=("$spawned")
}
forget_pid() {
  local keep=() pid
  for pid in "${pids[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
  pids=("${keep[@]}")
}
fail() {
  echo "run.sh: $*" >&2
  exit 1
}
# wait_for SECONDS WHAT CMD...: polls CMD until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)) what="$2"
  shift 2
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
    sleep 0.005
  done
}
now_ns() { date +%s%N; }

# A master in a fresh directory; sets $dir, $master_pid, $url, $token.
start_master() {
  dir="$work/$1"
  rm -rf "$dir"
  mkdir -p "$dir"
  [ -z "${2:-}" ] || printf '%s\n' "$2" >"$dir/clupy.master.yaml"
  spawn "$dir" "$dir/master.log" "$clupy" --master --port 0 --port-file "$dir/port" \
    --token-file "$dir/token" --data-dir "$dir/data" --log-level warn
  master_pid=$spawned
  wait_for 30 "the master to listen" test -s "$dir/port"
  url="clupy://127.0.0.1:$(cat "$dir/port")"
  token="$dir/token"
}
server_pids=()
start_server() {
  spawn "$dir" "$dir/$1.log" "$clupy" --serve --master-url "$url" --token-file "$token" \
    --server-id "$1" --capacity "${2:-2}" --log-level warn
  server_pids+=("$spawned")
}
info_json() { "$clupy" info --json --master-url "$url" --token-file "$token" 2>/dev/null; }
master_queued() { info_json | grep -q "\"queued_tasks\": $1,"; }
servers_registered() { [ "$(info_json | grep -c '"server_id"')" -eq "$1" ]; }
stop_cluster() {
  local pid
  for pid in "${server_pids[@]}" "$master_pid"; do
    stop_pid "$pid"
    forget_pid "$pid"
  done
  server_pids=()
}
# cluster NAME SERVERS [MASTER_YAML]: a master and SERVERS servers of two slots, all registered.
cluster() {
  local i
  start_master "$1" "${3:-}"
  for ((i = 1; i <= $2; i++)); do start_server "s$i"; done
  wait_for 60 "$2 servers to register" servers_registered "$2"
}

# client LOG CMD...: runs a benchmark program to completion (in the background, so that an
# interrupted run.sh still stops it by PID) and prints its output on failure.
client() {
  local log="$1" status=0
  shift
  spawn "$dir" "$log" env CLUPY_MASTER_URL="$url" CLUPY_TOKEN_FILE="$token" "$@"
  local pid=$spawned
  wait "$pid" || status=$?
  forget_pid "$pid"
  if [ $status -ne 0 ]; then
    cat "$log" >&2
    fail "$* exited with status $status"
  fi
}
# record ID CONFIG LOG: appends the RESULT line of LOG to the results.
record() {
  local line
  line="$(grep '^RESULT ' "$3" | tail -1)" || fail "no RESULT line in $3: $(cat "$3")"
  echo "$1 $2 ${line#RESULT }" >>"$results"
  echo "  [$1 $2] ${line#RESULT }"
}
# CPU ticks (utime + stime) of a process; 0 once it is gone.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# "master server workers" ticks of the current one-server cluster (workers: the server's children).
hop_ticks() {
  local server="${server_pids[0]}" workers=0 pid
  for pid in $(ps -o pid= --ppid "$server"); do workers=$((workers + $(ticks "$pid"))); done
  echo "$(ticks "$master_pid") $(ticks "$server") $workers"
}
# us_per_task TICKS TASKS
us_per_task() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }'; }
# record_hops ID CONFIG LOG TASKS "BEFORE": records LOG's RESULT with each daemon's CPU per task
# since BEFORE (from hop_ticks): where a task's microseconds go.
record_hops() {
  local before after extra
  read -r -a before <<<"$5"
  read -r -a after <<<"$(hop_ticks)"
  extra="master_us_per_task=$(us_per_task $((after[0] - before[0])) "$4")"
  extra+=" server_us_per_task=$(us_per_task $((after[1] - before[1])) "$4")"
  extra+=" workers_us_per_task=$(us_per_task $((after[2] - before[2])) "$4")"
  sed -i "/^RESULT /s/\$/ $extra/" "$3"
  record "$1" "$2" "$3"
}
wants() { [[ " $only " == *" $1 "* ]]; }

load_start="$(cut -d' ' -f1 /proc/loadavg)"
echo "CluPy benchmarks: $(nproc) cores, $runs run(s) each, load average $load_start, work dir $work"

if wants raw; then
  echo "raw loopback TCP (the floor for 2 and 7): one hop, and relayed over a task's hops"
  dir="$work"
  for ((r = 1; r <= runs; r++)); do
    client "$work/raw.log" "$raw_transport" pingpong "$round_trips" 64
    record raw pingpong "$work/raw.log"
    client "$work/raw.log" "$raw_transport" bulk "$payloads" "$payload_bytes"
    record raw bulk "$work/raw.log"
    client "$work/raw.log" "$raw_transport" pingpong "$round_trips" 64 relay
    record raw pingpong-relay "$work/raw.log"
    client "$work/raw.log" "$raw_transport" bulk "$payloads" "$payload_bytes" relay
    record raw bulk-relay "$work/raw.log"
  done
fi

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Bytes of calls and results that went through the master since it started (its /metrics on
# $master_http: calls submitted, outcomes from servers, held results and pushed calls relayed).
payload_bytes_through_master() {
  /usr/bin/python3 - "$master_http" <<'PY'
import sys, urllib.request
names = {"clupy_call_bytes_received_total", "clupy_result_bytes_received_total",
         "clupy_result_bytes_relayed_total", "clupy_pushed_call_bytes_relayed_total"}
page = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read()
print(int(sum(float(line.split()[1]) for line in page.decode().splitlines()
              if line.split(" ")[0] in names)))
PY
}

if wants 1 || wants 2 || wants 3 || wants 7 || wants 9 || wants 10; then
  master_http="$(free_port)"
  cluster main 1 "http_port: $master_http"
  if wants 1; then
    echo "1: throughput of $tasks no-op tasks, one server with two slots"
    for ((r = 1; r <= runs; r++)); do
      before="$(hop_ticks)"
      client "$dir/b1.log" "$task_bench" throughput "$tasks"
      record_hops 1 throughput "$dir/b1.log" "$tasks" "$before"
    done
  fi
  if wants 2; then
    echo "2: sequential round trip, $round_trips times"
    for ((r = 1; r <= runs; r++)); do
      before="$(hop_ticks)"
      client "$dir/b2.log" "$task_bench" roundtrip "$round_trips"
      record_hops 2 roundtrip "$dir/b2.log" "$round_trips" "$before"
    done
  fi
  if wants 3; then
    echo "3: primes over [$primes_range), in process vs two slots"
    for ((r = 1; r <= runs; r++)); do
      # shellcheck disable=SC2086
      client "$dir/b3.log" "$task_bench" primes $primes_range
      record 3 primes "$dir/b3.log"
    done
  fi
  if wants 7; then
    echo "7: $payloads tasks of 1 MiB in and out"
    for ((r = 1; r <= runs; r++)); do
      client "$dir/b7.log" "$task_bench" payload "$payloads" "$payload_bytes"
      record 7 payload "$dir/b7.log"
    done
  fi
  if wants 9; then
    echo "9: a chain of tasks ($chain_sizes: stages, bytes), through futures vs through the program"
    for ((r = 1; r <= runs; r++)); do
      # shellcheck disable=SC2086
      client "$dir/b9.log" "$task_bench" chain $chain_sizes 3
      record 9 chain "$dir/b9.log"
    done
  fi
  if wants 10; then
    echo "10: a tree reduction of $tree_sizes (leaves, bytes): time, and bytes through the master"
    for ((r = 1; r <= runs; r++)); do
      before="$(payload_bytes_through_master)"
      # shellcheck disable=SC2086
      client "$dir/b10.log" "$task_bench" tree $tree_sizes
      through=$(($(payload_bytes_through_master) - before))
      sed -i "/^RESULT /s/\$/ master_payload_bytes=$through/" "$dir/b10.log"
      record 10 tree "$dir/b10.log"
    done
  fi
  stop_cluster
  if wants 7 || wants 9; then
    # The same with every call and result through the master, for same-run ratios against
    # pushed calls and held results (docs/protocol.md#pushed-calls, #held-results).
    cluster via-master 1 $'result_threshold: 0\npush_threshold: 0'
    echo "7 and 9 again, every call and result through the master (push_threshold and" \
      "result_threshold: 0)"
    for ((r = 1; r <= runs; r++)); do
      if wants 7; then
        client "$dir/b7.log" "$task_bench" payload "$payloads" "$payload_bytes"
        record 7 payload-via-master "$dir/b7.log"
      fi
      if wants 9; then
        # shellcheck disable=SC2086
        client "$dir/b9.log" "$task_bench" chain $chain_sizes 3
        record 9 chain-via-master "$dir/b9.log"
      fi
    done
    stop_cluster
  fi
fi

if wants 4; then
  echo "4: cold start, launching master and server to the first result"
  for ((r = 1; r <= runs; r++)); do
    t0=$(now_ns)
    start_master "cold$r"
    start_server s1
    client "$dir/b4.log" "$task_bench" first
    t1=$(now_ns)
    echo "RESULT cold_start_ms=$(((t1 - t0) / 1000000))" >"$dir/b4.result"
    record 4 cold "$dir/b4.result"
    stop_cluster
  done
fi

if wants 5; then
  echo "5: memory with $queued tasks queued (no server runs them)"
  for ((r = 1; r <= runs; r++)); do
    start_master "mem$r" "client_window: $((queued + 1000))"
    rss() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$master_pid/status"; }
    before=$(rss)
    spawn "$dir" "$dir/b5.log" env CLUPY_MASTER_URL="$url" CLUPY_TOKEN_FILE="$token" \
      "$task_bench" memory "$queued" "$dir/release"
    holder=$spawned
    wait_for 300 "the client to submit" grep -qs READY "$dir/b5.log"
    wait_for 300 "the master to queue every task" master_queued "$queued"
    after=$(rss)
    touch "$dir/release"
    wait "$holder" || fail "the memory client failed: $(cat "$dir/b5.log")"
    forget_pid "$holder"
    grep '^RESULT ' "$dir/b5.log" | sed "s/\$/ master_rss_before=$before master_rss_after=$after master_bytes_per_task=$(((after - before) / queued))/" >"$dir/b5.result"
    record 5 memory "$dir/b5.result"
    stop_cluster
  done
fi

if wants 6; then
  for servers in 1 2 4 8; do
    echo "6: throughput of $scale_tasks no-op tasks over $servers server(s) of two slots"
    cluster "scale$servers" "$servers"
    for ((r = 1; r <= runs; r++)); do
      client "$dir/b6.log" "$task_bench" throughput "$scale_tasks"
      record 6 "servers=$servers" "$dir/b6.log"
    done
    stop_cluster
  done
  echo "6: master CPU with $sim_servers simulated servers heartbeating every second"
  for ((r = 1; r <= runs; r++)); do
    start_master "sim$r" "registration_ttl: 30s"
    client "$dir/b6sim.log" "$heartbeat_sim" "$url" "$token" "$master_pid" "$sim_servers" 1000 \
      "$sim_seconds"
    record 6 heartbeats "$dir/b6sim.log"
    stop_cluster
  done
fi

if wants 8 || wants 10; then
  if ! /usr/bin/python3 -c 'import distributed' 2>/dev/null; then
    echo "8: SKIPPED: Dask distributed is not installed (apt-get install python3-distributed," \
      "or tools/install-deps.sh)"
    echo "8 skipped reason=python3-distributed_not_installed" >>"$results"
  else
    echo "8 and 10: the same on Dask distributed (scheduler + two single-thread workers)"
    dir="$work/dask"
    mkdir -p "$dir"
    # worker-saturation inf: Dask's fastest setting for many small tasks (its default queues
    # tasks on the scheduler and runs 3-5x slower here).
    spawn "$dir" "$dir/scheduler.log" env DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION=inf \
      /usr/bin/python3 -m distributed.cli.dask_scheduler --host 127.0.0.1 --port 0 \
      --scheduler-file "$dir/scheduler.json" --no-dashboard
    dask_pids=("$spawned")
    wait_for 60 "the Dask scheduler" test -s "$dir/scheduler.json"
    for w in 1 2; do
      spawn "$dir" "$dir/worker$w.log" /usr/bin/python3 -m distributed.cli.dask_worker \
        --scheduler-file "$dir/scheduler.json" --nthreads 1 --no-nanny --no-dashboard \
        --host 127.0.0.1
      dask_pids+=("$spawned")
    done
    for ((r = 1; r <= runs; r++)); do
      if wants 8; then
        client "$dir/b8.log" /usr/bin/python3 "$root/bench/dask_bench.py" "$dir/scheduler.json" \
          throughput "$dask_tasks"
        record 8 dask-throughput "$dir/b8.log"
        client "$dir/b8.log" /usr/bin/python3 "$root/bench/dask_bench.py" "$dir/scheduler.json" \
          roundtrip "$dask_round_trips"
        record 8 dask-roundtrip "$dir/b8.log"
      fi
      if wants 10; then
        # shellcheck disable=SC2086
        client "$dir/b10.log" /usr/bin/python3 "$root/bench/dask_bench.py" "$dir/scheduler.json" \
          tree $tree_sizes
        record 10 dask-tree "$dir/b10.log"
      fi
    done
    for pid in "${dask_pids[@]}"; do
      stop_pid "$pid"
      forget_pid "$pid"
    done
  fi
fi

if wants net; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "net: SKIPPED: the test bed needs root (network namespaces, mounts)"
    echo "net skipped reason=needs_root" >>"$results"
  else
    # In the background and waited for, so that a signal to this script stops it (and so its
    # test bed, which its EXIT trap removes) at once: bash runs a trap only after the command
    # in the foreground has ended.
    net_sizes=()
    [ "$quick" = 0 ] || net_sizes=(BENCH_NET_TASKS=2000 BENCH_NET_ROUND_TRIPS=100 BENCH_NET_PAYLOADS=10)
    env "${net_sizes[@]}" "$root/bench/network.sh" "$build_dir" "$results" \
      "$([ "$quick" = 1 ] && echo 1 || echo "$runs")" &
    net_pid=$!
    pids+=("$net_pid")
    status=0
    wait "$net_pid" || status=$?
    forget_pid "$net_pid"
    [ "$status" -eq 0 ] || fail "bench/network.sh exited with status $status"
  fi
fi

report_args=(--results "$results" --cores "$(nproc)" --runs "$runs" --load-start "$load_start"
  --param "tasks=$tasks" --param "round_trips=$round_trips" --param "primes=$primes_range"
  --param "payloads=$payloads" --param "payload_bytes=$payload_bytes" --param "queued=$queued"
  --param "scale_tasks=$scale_tasks" --param "sim_servers=$sim_servers"
  --param "dask_tasks=$dask_tasks" --param "dask_round_trips=$dask_round_trips" --param "tree=$tree_sizes"
  --param "net_tasks=${BENCH_NET_TASKS:-100000}" --param "net_round_trips=${BENCH_NET_ROUND_TRIPS:-2000}"
  --param "net_payloads=${BENCH_NET_PAYLOADS:-300}")
[ -z "$json" ] || report_args+=(--json "$json")
[ "$docs" = 0 ] || report_args+=(--docs "$root/docs/benchmarks.md")
echo
/usr/bin/python3 "$root/bench/report.py" "${report_args[@]}"
