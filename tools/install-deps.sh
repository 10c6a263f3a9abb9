#!/usr/bin/env bash
# Installs every Debian package CluPy needs and fetches the header-only msgpack-cxx into the
# project's cache. Idempotent: a second run changes nothing and takes a few seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  cmake ninja-build pkg-config g++ ccache clang-format
  clang-14 libclang-rt-14-dev  # the libFuzzer targets (tests/fuzz) need Clang and its libFuzzer
  libboost1.81-dev libprotobuf-dev protobuf-compiler
  libyaml-cpp-dev libhiredis-dev libzookeeper-mt-dev libspdlog-dev libcli11-dev
  nlohmann-json3-dev libssl-dev libgtest-dev libgmock-dev libbenchmark-dev
  redis-server zookeeper openssl procps
  slurm-wlm munge      # tests/slurm start a real Slurm (slurmctld, slurmd, munged)
  python3-distributed  # bench/run.sh compares with Dask (benchmark 8); it skips Dask when absent
  wrk                  # bench/service/run.sh (docs/services.md, "Performance")
  chromium nodejs npm fonts-dejavu-core  # the dashboard's browser test (tests/browser)
  gnuplot-nox          # examples/montecarlo draws its PNG (tests/integration/montecarlo_test.cc)
  # The .deb (cpack -G DEB, dpkg-shlibdeps) and its checks, and the test bed (tools/testbed.sh)
  dpkg-dev file binutils lintian systemd debootstrap zstd nftables iproute2 util-linux
)

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

missing=()
for p in "${packages[@]}"; do
  # A nodejs from another source than Debian (NodeSource's) carries npm and conflicts with
  # Debian's npm package: an npm on the PATH is enough.
  if [ "$p" = npm ] && command -v npm >/dev/null; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -o DPkg::Lock::Timeout=300
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "${missing[@]}"
fi

# msgpack-cxx's Debian package depends on Boost 1.74, which conflicts with Boost 1.81; it is
# header-only, so we unpack it into the project cache instead of installing it.
msgpack_dir="$root/.cache/deps/msgpack"
if [ ! -f "$msgpack_dir/usr/include/msgpack.hpp" ]; then
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download libmsgpack-cxx-dev >/dev/null)
  mkdir -p "$msgpack_dir"
  dpkg-deb -x "$tmp"/libmsgpack-cxx-dev_*.deb "$msgpack_dir"
  rm -rf "$tmp"
fi

# The dashboard's browser test drives Debian's chromium with playwright-core (no browser of its
# own), installed once per machine into a shared cache; never into the source tree.
npm_cache="${CLUPY_NPM_CACHE:-/var/cache/clupy-npm}"
playwright_version=1.65.2
if [ "$(node -p "require('$npm_cache/node_modules/playwright-core/package.json').version" \
        2>/dev/null)" != "$playwright_version" ]; then
  "${sudo_cmd[@]}" mkdir -p "$npm_cache"
  "${sudo_cmd[@]}" npm install --no-audit --no-fund --prefix "$npm_cache" \
    "playwright-core@$playwright_version"
fi
echo "install-deps: ok"
