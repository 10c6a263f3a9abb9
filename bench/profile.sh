#!/usr/bin/env bash
# Where a task's time goes: runs one task_bench mode with the master, the server (and, through
# it, the workers) and the client under valgrind's callgrind, which counts instructions
# repeatably on a shared machine, then prints instructions per task for each process and its
# costliest functions. Uses the Release build of bench/run.sh (build-bench/).
#
#   bench/profile.sh [MODE ARGS...]     default: throughput 20000
#   bench/profile.sh payload 100 1048576
#
# The callgrind files stay in the printed directory for callgrind_annotate or kcachegrind.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BENCH_BUILD_DIR:-$root/build-bench}"
[ $# -gt 0 ] || set -- throughput 20000
tasks="$2"
command -v valgrind >/dev/null || { echo "profile.sh: valgrind is not installed" >&2; exit 1; }

out="$(mktemp -d /tmp/clupy-profile.XXXXXX)"
pids=()
# Stops in reverse order of start (client, server, master), so each daemon exits cleanly and
# callgrind writes its file.
cleanup() {
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid="${pids[i]}"
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1000); do kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

grind=(valgrind --tool=callgrind --dump-instr=no --collect-jumps=no)
cd "$out"
"${grind[@]}" --callgrind-out-file="$out/master.cg" "$build/tools/clupy" --master --port 0 \
  --port-file "$out/port" --token-file "$out/token" --data-dir "$out/data" --log-level warn \
  >"$out/master.log" 2>&1 &
pids+=($!)
for _ in $(seq 6000); do [ -s "$out/port" ] && break; sleep 0.01; done
[ -s "$out/port" ] || { echo "profile.sh: the master did not start" >&2; exit 1; }
url="clupy://127.0.0.1:$(cat "$out/port")"
# --trace-children: the workers the server starts run under callgrind too (server.PID.cg).
"${grind[@]}" --trace-children=yes --callgrind-out-file="$out/server.%p.cg" "$build/tools/clupy" \
  --serve --master-url "$url" --token-file "$out/token" --server-id s1 --capacity 2 \
  --log-level warn >"$out/server.log" 2>&1 &
pids+=($!)
server=$!
CLUPY_MASTER_URL="$url" CLUPY_TOKEN_FILE="$out/token" "${grind[@]}" \
  --callgrind-out-file="$out/client.cg" "$build/bench/cluster/task_bench" "$@" >"$out/client.log" 2>&1 &
pids+=($!)
client=$!
wait "$client" || { cat "$out/client.log" >&2; exit 1; }
grep '^RESULT' "$out/client.log"
cleanup
pids=()

# Which server.PID.cg is the server itself and which are workers.
echo
echo "instructions per task (warm-up and start-up included), by process:"
for f in "$out"/master.cg "$out"/server.*.cg "$out"/client.cg; do
  name="$(basename "$f" .cg)"
  [[ "$name" == server.$server ]] && name="server"
  [[ "$name" == server.* ]] && name="worker ${name#server.}"
  # Workers are SIGKILLed by their server, so callgrind cannot write their files.
  total="$(grep -m1 '^summary:' "$f" | awk '{ print $2 }' || true)"
  [ -n "$total" ] || continue
  printf '  %-14s %12.0f\n' "$name" "$(awk -v t="$total" -v n="$tasks" 'BEGIN { print t / n }')"
done
for f in "$out"/master.cg "$out"/server.$server.cg "$out"/client.cg; do
  echo
  echo "== $(basename "$f" .cg): costliest functions, inclusive"
  callgrind_annotate --inclusive=yes "$f" 2>/dev/null | grep -v '^--\|^$' | sed -n '8,30p' |
    cut -c1-160
done
echo
echo "callgrind files: $out"
