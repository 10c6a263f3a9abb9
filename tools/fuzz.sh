#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with Clang in build-fuzz and runs each for a bounded
# time, starting from its committed seeds in tests/fuzz/corpus/<name>. A crash, leak, timeout or
# failed check stops the run: the input is saved as build-fuzz/artifacts/<name>-crash-* and the
# command that replays it is printed. tools/test.sh runs this with the default time.
#
# Usage: tools/fuzz.sh [--seconds N] [--merge] [--no-build] [name...]
#   --seconds N  run each target N seconds (default 30)
#   --merge      afterwards, add the inputs that found new coverage to the committed corpus
#   name         frame_decoder, call_decoding, handshake, config_parsers, master_http (default all)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds=30 merge=0 build=1 targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --merge) merge=1; shift ;;
    --no-build) build=0; shift ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(frame_decoder call_decoding handshake config_parsers master_http)

dir="$root/build-fuzz"
if [ "$build" = 1 ]; then
  command -v clang++-14 >/dev/null || { echo "fuzz.sh: clang++-14 is missing (tools/install-deps.sh installs it)" >&2; exit 1; }
  echo "== fuzz: configure and build ($dir)"
  cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLUPY_FUZZ=ON -DCLUPY_BUILD_TESTS=OFF -DCLUPY_WERROR=ON >/dev/null
  cmake --build "$dir" -j "${CLUPY_JOBS:-$(nproc)}" --target clupy_fuzzers
fi

mkdir -p "$dir/artifacts"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=0"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
for name in "${targets[@]}"; do
  binary="$dir/tests/fuzz/fuzz_$name"
  seeds="$root/tests/fuzz/corpus/$name"
  [ -x "$binary" ] || { echo "fuzz.sh: no target $name ($binary)" >&2; exit 1; }
  [ -d "$seeds" ] || { echo "fuzz.sh: no seed corpus for $name ($seeds)" >&2; exit 1; }
  found="$(mktemp -d)"
  echo "== fuzz: $name for ${seconds}s ($(ls "$seeds" | wc -l) seeds)"
  # New inputs go to the first folder (a scratch one); the committed seeds are only read.
  if ! "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$dir/artifacts/$name-" "$found" "$seeds" \
      >"$dir/artifacts/$name.log" 2>&1; then
    tail -60 "$dir/artifacts/$name.log"
    echo "fuzz.sh: $name failed; replay the saved input with: $binary $dir/artifacts/$name-<file>" >&2
    rm -rf "$found"
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "$dir/artifacts/$name.log" |
    tr '\n' ' '
  echo
  if [ "$merge" = 1 ]; then
    "$binary" -merge=1 "$seeds" "$found" >/dev/null 2>&1
    echo "   corpus now $(ls "$seeds" | wc -l) seeds"
  fi
  rm -rf "$found"
done
echo "== fuzz: every target ran clean"
