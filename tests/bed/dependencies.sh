#!/usr/bin/env bash
# Scenario 7: dependencies on separate hosts, each with its own dpkg database. The servers run as
# the clupy user, as the package's unit does, and install through sudo with a rule that allows
# exactly one install script (docs/dependencies.md). A manifest change reaches the three running
# servers and each installs the package into its own root filesystem; the time until all three
# report it is measured. Then a job brings a package of its own that only s1 and s2 can install
# (s3's folder lacks it): init returns once all three have settled it, and every task runs on s1
# or s2.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# make_deb NAME VERSION: a package whose one file says its name and version.
make_deb() {
  local name="$1" version="$2" root="$BED_SHARED/debs/$1-$2"
  mkdir -p "$root/DEBIAN" "$root/usr/share/clupy-bed"
  printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: CluPy bed <bed@localhost>\nDescription: CluPy bed test package\n' \
    "$name" "$version" >"$root/DEBIAN/control"
  echo "$name $version" >"$root/usr/share/clupy-bed/$name"
  dpkg-deb --root-owner-group --build "$root" "$BED_SHARED/debs/${name}_${version}_all.deb" >/dev/null
}
make_deb clupy-bed-base 1.0
make_deb clupy-bed-extra 1.0

install_script='#!/bin/sh
# Installs the named packages from this host'"'"'s folder (what apt would do from a file: source).
set -e
for p in "$@"; do
  f="$(ls /var/cache/clupy-bed-repo/"$p"_*.deb 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$f" ] || { echo "no package $p in /var/cache/clupy-bed-repo on $(hostname)"; exit 100; }
  dpkg -i "$f"
done'
for i in 1 2 3; do
  host="s$i"
  bed_host "$host" "1$i"
  root="$(bed_root "$host")"
  mkdir -p "$root/var/cache/clupy-bed-repo" "$root/etc/sudoers.d"
  cp "$BED_SHARED/debs/clupy-bed-base_1.0_all.deb" "$root/var/cache/clupy-bed-repo/"
  [ "$host" = s3 ] || cp "$BED_SHARED/debs/clupy-bed-extra_1.0_all.deb" "$root/var/cache/clupy-bed-repo/"
  printf '%s\n' "$install_script" >"$root/usr/local/sbin/clupy-bed-install"
  chmod 0755 "$root/usr/local/sbin/clupy-bed-install"
  echo 'clupy ALL=(root) NOPASSWD: /usr/local/sbin/clupy-bed-install *' >"$root/etc/sudoers.d/clupy-install"
  chmod 0440 "$root/etc/sudoers.d/clupy-install"
  if bed_exec "$host" dpkg-query -W clupy-bed-base >/dev/null 2>&1; then
    scenario_fail "$host has clupy-bed-base before the manifest asks for it"
  fi
done

write_manifest() {  # the manifest on the master host, replaced whole as an editor saves a file
  local root
  root="$(bed_root master)"
  {
    echo 'install_command: "sudo -n /usr/local/sbin/clupy-bed-install {packages}"'
    echo "allow_client_packages: true"
    printf '%s\n' "$@"
  } >"$root/etc/clupy/deps.yaml.tmp"
  mv "$root/etc/clupy/deps.yaml.tmp" "$root/etc/clupy/deps.yaml"
}
bed_host master 10
write_manifest
start_master "dependency_file: /etc/clupy/deps.yaml"
for i in 1 2 3; do start_server "s$i" "1$i" "capacity: 2"; done
bed_wait_for "three servers registered" 30 servers_connected_at_least 3

# synced VERSION: every server reports the manifest VERSION satisfied.
manifest_version() { cluster_info | python3 -c 'import json,sys; print(json.load(sys.stdin)["dependency_manifest"])'; }
synced() {
  cluster_info | python3 -c '
import json, sys
info = json.load(sys.stdin)
want = info["dependency_manifest"]
ok = [s for s in info["servers"] if s["connected"] and s["dependency_manifest"] == want and s["dependency_state"] == "satisfied"]
sys.exit(0 if want and len(ok) == 3 else 1)'
}

started_ns=$(date +%s%N)
write_manifest "packages:" "  - name: clupy-bed-base" '    version: ">= 1.0"'
bed_wait_for "the three servers to install clupy-bed-base" 60 synced
synced_ms=$((($(date +%s%N) - started_ns) / 1000000))
for i in 1 2 3; do
  version="$(bed_exec "s$i" dpkg-query -W -f '${Version}' clupy-bed-base)" ||
    scenario_fail "s$i: dpkg does not know clupy-bed-base after the sync"
  [ "$version" = "1.0" ] || scenario_fail "s$i has clupy-bed-base $version"
done
echo "manifest change -> 3 hosts installed clupy-bed-base and reported it: ${synced_ms} ms"
echo "MANIFEST_SYNC_MS $synced_ms"
if dpkg-query -W clupy-bed-base >/dev/null 2>&1; then
  scenario_fail "the main host has clupy-bed-base: the hosts' dpkg databases are not separate"
fi

# A job's own package, which s3 cannot install.
printf 'packages:\n  - name: clupy-bed-extra\n' >"$BED_SHARED/job-dependencies.yaml"
CLUPY_DEPENDENCY_FILE="$BED_SHARED/job-dependencies.yaml" run_client own-package "$BED_CLIENT" spread 600 ||
  scenario_fail "the job with its own package failed: $(cat "$BED_SHARED/logs/own-package.stderr.log")"
cat "$BED_SHARED/logs/own-package.log"
grep -q '^OUTCOMES 600 0 0 0 0$' "$BED_SHARED/logs/own-package.log" ||
  scenario_fail "600 tasks: not all right and completed once"
if grep -q '^HOST s3 ' "$BED_SHARED/logs/own-package.log"; then
  scenario_fail "s3 ran tasks of a job whose package it could not install"
fi
for host in s1 s2; do
  grep -q "^HOST $host " "$BED_SHARED/logs/own-package.log" || scenario_fail "no task ran on $host"
  bed_exec "$host" dpkg-query -W clupy-bed-extra >/dev/null ||
    scenario_fail "$host does not have the job's package"
done
grep -q 'server s3 cannot install this job.s packages and gets none of its tasks: clupy-bed-extra' \
  "$BED_SHARED/logs/own-package.stderr.log" ||
  scenario_fail "the program was not told why s3 takes none of its tasks"
grep -q 'no package clupy-bed-extra in /var/cache/clupy-bed-repo on s3' "$BED_SHARED/logs/own-package.stderr.log" ||
  scenario_fail "the program was not shown the installer's output from s3"
echo "the job's own package: installed on s1 and s2, refused by s3 (which ran none of its tasks)"
echo "scenario ok"
