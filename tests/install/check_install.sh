#!/usr/bin/env bash
# Installs the build into a scratch prefix, then builds and runs a consumer program against it,
# once with find_package(clupy) and once with pkg-config.
set -euo pipefail
build="$1" source="$2"
prefix="$(mktemp -d)"
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cmake -S "$source/tests/install/consumer" -B "$prefix/consumer-build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" >/dev/null
LD_LIBRARY_PATH="$prefix/lib" "$prefix/consumer-build/consumer"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
g++ -o "$prefix/consumer-pc" "$source/tests/install/consumer/main.cpp" $(pkg-config --cflags --libs clupy)
LD_LIBRARY_PATH="$prefix/lib" "$prefix/consumer-pc"
"$prefix/bin/clupy" --version
echo "install ok"
