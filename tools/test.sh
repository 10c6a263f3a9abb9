#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, builds with warnings as errors,
# runs every test, then does the same in an AddressSanitizer + UndefinedBehaviorSanitizer build.
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
export CCACHE_DIR CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
common_flags=(-G Ninja -DCLUPY_WERROR=ON -DCLUPY_BUILD_TESTS=ON)

run_suite() {  # name, build dir, extra cmake flags...
  local name="$1" dir="$2"
  shift 2
  echo "== $name: configure and build ($dir)"
  cmake -S "$root" -B "$dir" "${common_flags[@]}" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "== $name: tests"
  (cd "$dir" && ctest -j "$jobs" --output-on-failure --timeout 600)
}

run_suite "release" "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLUPY_BUILD_BENCH=ON
if [ "${1:-}" != "--no-sanitizers" ]; then
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/tools/lsan.supp}"
  run_suite "asan+ubsan" "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DCLUPY_SANITIZE=ON
fi
echo "== all test suites passed"
