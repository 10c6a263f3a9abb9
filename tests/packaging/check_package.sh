#!/usr/bin/env bash
# Makes the .deb with CPack (the bed tests install it) and checks it: its contents, libclupy's
# soname, Depends computed by dpkg-shlibdeps, the systemd units (systemd-analyze verify) and
# lintian (no errors). Usage: check_package.sh BUILD_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
fail() {
  echo "FAILED: $*" >&2
  exit 1
}
for tool in cpack dpkg-deb dpkg-shlibdeps lintian systemd-analyze readelf; do
  command -v "$tool" >/dev/null || fail "$tool is missing (tools/install-deps.sh installs it)"
done

out="$build/packages"
rm -rf "$out"
(cd "$build" && cpack -G DEB -B "$out" >"$build/cpack.log" 2>&1) ||
  { cat "$build/cpack.log"; fail "cpack -G DEB failed"; }
version="$(sed -n 's/^CPACK_PACKAGE_VERSION:STRING=//p; s/^set(CPACK_PACKAGE_VERSION "\(.*\)")/\1/p' \
  "$build/CPackConfig.cmake" | head -n1)"
deb="$out/clupy_${version}_amd64.deb"
[ -s "$deb" ] || fail "cpack made $(ls "$out") instead of $(basename "$deb")"
echo "package: $deb ($(stat -c %s "$deb") bytes)"

depends="$(dpkg-deb -f "$deb" Depends)"
echo "Depends: $depends"
for library_package in libc6 libstdc++6 libprotobuf32 libssl3 libyaml-cpp0.7 libzookeeper-mt2 \
  libhiredis0.14 libspdlog1.10; do
  grep -q "$library_package" <<<"$depends" || fail "Depends lacks $library_package (shlibdeps)"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/root"
dpkg-deb -e "$deb" "$tmp/control"
for path in usr/bin/clupy usr/lib/libclupy.so.0 usr/lib/libclupy.so usr/include/clupy/clupy.hpp \
  usr/lib/cmake/clupy/clupyConfig.cmake usr/lib/pkgconfig/clupy.pc \
  usr/lib/systemd/system/clupy-master.service usr/lib/systemd/system/clupy-server.service \
  etc/clupy/clupy.master.yaml etc/clupy/clupy.server.yaml usr/share/doc/clupy/copyright; do
  [ -e "$tmp/root/$path" ] || fail "the package has no /$path"
done
soname="$(readelf -d "$tmp/root/usr/lib/libclupy.so.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
[ "$soname" = libclupy.so.0 ] || fail "libclupy's soname is '$soname', not libclupy.so.0"
if readelf -d "$tmp/root/usr/bin/clupy" | grep -qE 'RPATH|RUNPATH'; then
  fail "the installed clupy command keeps a RUNPATH"
fi
grep -q '^libclupy 0 clupy' "$tmp/control/shlibs" || fail "no shlibs entry for libclupy.so.0"
grep -q ldconfig "$tmp/control/triggers" || fail "no ldconfig trigger"
echo "soname: $soname; shlibs: $(cat "$tmp/control/shlibs")"

# The units, as systemd reads them (ExecStart's binary resolved inside the unpacked package).
for unit in clupy-master clupy-server; do
  grep -q "^ExecStart=/usr/bin/clupy" "$tmp/root/usr/lib/systemd/system/$unit.service" ||
    fail "$unit.service does not start /usr/bin/clupy"
  for key in NoNewPrivileges=yes ProtectSystem=strict ReadWritePaths=/var/lib/clupy PrivateTmp=yes \
    Restart=on-failure User=clupy; do
    grep -qx "$key" "$tmp/root/usr/lib/systemd/system/$unit.service" || fail "$unit.service lacks $key"
  done
done
# verify --root resolves the units' dependencies (sysinit.target, ...) inside the root: give it
# this machine's system units beside the package's. Any message (an unknown key is only a
# warning to systemd) fails the test.
cp -an /usr/lib/systemd/system/. "$tmp/root/usr/lib/systemd/system/"
if ! systemd-analyze verify --root="$tmp/root" --man=no \
  "$tmp/root/usr/lib/systemd/system/clupy-master.service" \
  "$tmp/root/usr/lib/systemd/system/clupy-server.service" >"$tmp/verify.log" 2>&1 ||
  [ -s "$tmp/verify.log" ]; then
  cat "$tmp/verify.log"
  fail "systemd-analyze verify reports problems in the units"
fi
echo "systemd-analyze verify: both units ok"

lintian --fail-on error --tag-display-limit 0 "$deb" >"$tmp/lintian.log" 2>&1 ||
  { cat "$tmp/lintian.log"; fail "lintian reports errors"; }
echo "lintian: no errors; $(grep -c '^W:' "$tmp/lintian.log" || true) warnings:"
sed -n 's/^W: /  /p' "$tmp/lintian.log"
echo "package ok"
