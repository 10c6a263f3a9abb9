#!/usr/bin/env bash
# The main job: builds CluPy, starts a local cluster (one master, two servers, each its own
# process on loopback), runs examples/primes.cpp on it (the primes of 100..199, computed by the
# servers' worker processes), prints the cluster's registry, and stops everything it started.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/tools/install-deps.sh"

export CCACHE_DIR="${CCACHE_DIR:-$root/.cache/ccache}"
build="$root/build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "${CLUPY_JOBS:-$(nproc)}" --target clupy_cli primes
clupy="$build/tools/clupy"

work="$(mktemp -d /tmp/clupy-main-job.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

export CLUPY_TOKEN_FILE="$work/cluster.token"
cd "$work"  # the daemons keep their data and caches in their working directory
echo "== starting the master"
"$clupy" --master --port 0 --port-file "$work/port" --token-file "$CLUPY_TOKEN_FILE" \
  >"$work/master.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do [ -s "$work/port" ] && break; sleep 0.05; done
[ -s "$work/port" ] || { cat "$work/master.log"; echo "master did not start"; exit 1; }
url="clupy://127.0.0.1:$(cat "$work/port")"
echo "   master at $url"

echo "== starting two servers"
for name in server-1 server-2; do
  "$clupy" --serve --master-url "$url" --server-id "$name" --label "role=demo" --log-level debug \
    >"$work/$name.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 200); do
  [ "$("$clupy" info --json --master-url "$url" 2>/dev/null | grep -c '"server_id"')" = 2 ] && break
  sleep 0.05
done

echo "== the cluster's registry (clupy --client info)"
"$clupy" --client info --master-url "$url"

echo "== examples/primes.cpp on the cluster"
CLUPY_MASTER_URL="$url" "$build/examples/primes"

echo "== where the tasks ran"
grep -h "started worker\|cached" "$work"/server-*.log | sed 's/^/   /' || true
