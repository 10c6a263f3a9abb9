#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, builds with warnings as errors,
# runs every test, then does the same in an AddressSanitizer + UndefinedBehaviorSanitizer build,
# then runs the threaded part of the suite in a ThreadSanitizer build (tsan_tests below), then
# each libFuzzer target for a bounded time (tools/fuzz.sh; CLUPY_FUZZ_SECONDS each, default 30).
# Usage: tools/test.sh [--no-sanitizers]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/tools/install-deps.sh"

"$root/tools/check-format.sh"

jobs="${CLUPY_JOBS:-$(nproc)}"
# The compiler cache is machine-wide when it can be (CI clones afresh for every run; paths are
# made relative to the checkout so that one clone's objects serve the next).
if [ -z "${CCACHE_DIR:-}" ]; then
  CCACHE_DIR="$root/.cache/ccache"
  mkdir -p /var/cache/clupy-ccache 2>/dev/null && [ -w /var/cache/clupy-ccache ] &&
    CCACHE_DIR=/var/cache/clupy-ccache
fi
# Release, sanitizer builds and their debug information: room for all of them.
CCACHE_DIR="$CCACHE_DIR" ccache --max-size=20G >/dev/null 2>&1 || true
# Debug information makes ccache hash the build directory unless told not to (hash_dir): with
# it, no clone or worktree could ever reuse another's objects.
export CCACHE_DIR CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}" CCACHE_NOHASHDIR=1
common_flags=(-G Ninja -DCLUPY_WERROR=ON -DCLUPY_BUILD_TESTS=ON)

run_suite() {  # name, build dir, ctest exclusion regex (or ""), extra cmake flags...
  local name="$1" dir="$2" exclude="$3"
  shift 3
  echo "== $name: configure and build ($dir)"
  cmake -S "$root" -B "$dir" "${common_flags[@]}" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "== $name: tests"
  (cd "$dir" && ctest -j "$jobs" --output-on-failure --timeout 600 ${exclude:+-E "$exclude"})
}

# ThreadSanitizer: the tests where threads of one process meet (the client runtime's I/O thread
# and program threads, futures, the embedded cluster, the store's and coordination's threads,
# a client failing over to a standby master), and the daemons started by the cluster tests,
# themselves built with TSan: the tests labelled tsan (clupy_add_test ... TSAN), less the long
# parallel_test cases whose paths shorter ones already cover. The rest of the suite repeats
# those paths single-threaded and would only add time.
tsan_targets=(clupy_cli common_test master_test clupy_future_test clupy_worker_output_test
              clupy_submission_window_test
              store_service_test store_test cluster_test parallel_test standby_master_test
              dataplane_test)
tsan_skip='^ParallelTest\.(TenThousandTasks|BigPayloads|ATaskPrintingMuch|BurstsLargerThanAFrame|CrashesAmongBatchedQuickTasks|KilledClientFrees|ShortTasksDoNotQueue|ServerCountTwo)'
run_tsan() {
  local dir="$root/build-tsan"
  echo "== tsan: configure and build ($dir)"
  cmake -S "$root" -B "$dir" "${common_flags[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCLUPY_TSAN=ON >/dev/null
  cmake --build "$dir" -j "$jobs" --target "${tsan_targets[@]}"
  echo "== tsan: tests"
  (cd "$dir" && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$root/tools/tsan.supp" \
    ctest -j "$jobs" --output-on-failure --timeout 600 -L tsan -E "$tsan_skip")
}

# timed NAME CMD...: runs CMD and records how long it took, for the summary at the end (the
# project notes say what each part of CI costs).
timings=()
timed() {
  local name="$1" started=$SECONDS
  shift
  "$@"
  timings+=("$name $((SECONDS - started)) s")
}

timed "release build and tests" \
  run_suite "release" "$root/build" "" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLUPY_BUILD_BENCH=ON
if [ "${1:-}" != "--no-sanitizers" ]; then
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/tools/lsan.supp}"
  # The .deb, the test bed's hosts and Slurm (about 10 minutes: packaging ~4.5, the bed's ten
  # scenarios ~4, the one-host Slurm test ~1.5) run in the release pass only:
  # they test packaging and machines; the daemons' code paths they reach run under the
  # sanitizers in the cluster tests.
  timed "asan+ubsan build and tests" \
    run_suite "asan+ubsan" "$root/build-asan" '^(packaging|install|bed|slurm)' \
    -DCMAKE_BUILD_TYPE=Debug -DCLUPY_SANITIZE=ON
  timed "tsan build and tests" run_tsan
  timed "fuzzing" "$root/tools/fuzz.sh" --seconds "${CLUPY_FUZZ_SECONDS:-30}"
fi
echo "== all test suites passed (whole run $SECONDS s)"
printf '   %s\n' "${timings[@]}"
