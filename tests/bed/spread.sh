#!/usr/bin/env bash
# Scenario 1: a master host and three server hosts, the client on the main host. The program
# was built here against the build tree; the hosts have only the .deb, so its workers find
# libclupy by soname (/usr/lib/libclupy.so.0 from the package), not by the build tree's RUNPATH.
# examples/primes gives the sequential results, and 10,000 tasks are all right, each completed
# once, on all three hosts.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Proof of separation: the build tree does not exist on a server host.
bed_host s1 11
if bed_exec s1 test -e "$BED_BUILD_DIR"; then scenario_fail "host s1 sees $BED_BUILD_DIR"; fi
start_master
start_server s1 11 "capacity: 2"
start_server s2 12 "capacity: 2"
start_server s3 13 "capacity: 2"
bed_wait_for "three servers registered" 30 servers_connected_at_least 3

run_client primes "$BED_PRIMES" || scenario_fail "examples/primes failed on the bed"
"$BED_CLIENT" primes-sequential >"$BED_SHARED/logs/primes-sequential.log"
diff <(grep '^primes(' "$BED_SHARED/logs/primes.log") "$BED_SHARED/logs/primes-sequential.log" ||
  scenario_fail "examples/primes differs from the sequential results"
grep -q "100 of 100 tasks succeeded on $(master_url)" "$BED_SHARED/logs/primes.log" ||
  scenario_fail "examples/primes did not run on the bed's master"
echo "primes: 100 results equal to sequential, via $(master_url)"

run_client spread "$BED_CLIENT" spread 10000 || true
cat "$BED_SHARED/logs/spread.log"
grep -q '^OUTCOMES 10000 0 0 0 0$' "$BED_SHARED/logs/spread.log" ||
  scenario_fail "10,000 tasks: not all right and completed once"
for host in s1 s2 s3; do
  count="$(awk -v h="$host" '$1 == "HOST" && $2 == h {print $3}' "$BED_SHARED/logs/spread.log")"
  [ "${count:-0}" -gt 0 ] || scenario_fail "no task ran on host $host"
done
[ "$(grep -c '^HOST ' "$BED_SHARED/logs/spread.log")" -eq 3 ] ||
  scenario_fail "tasks ran on hosts other than s1, s2, s3"
# The workers ran from the package's libclupy, found by soname: the program image in s1's cache
# resolves libclupy.so.0 to /usr/lib, though its RUNPATH names the build tree.
images="$(bed_exec s1 find /var/lib/clupy/server-cache/images -maxdepth 1 -type f ! -name '*.part-*')"
[ -n "$images" ] || scenario_fail "no program image in s1's cache"
for image in $images; do
  resolved="$(bed_exec s1 /lib64/ld-linux-x86-64.so.2 --list "$image" 2>&1)" ||
    scenario_fail "the loader on s1 cannot list $image: $resolved"
  grep -qE 'libclupy.so.0 => (/usr)?/lib/libclupy.so.0 ' <<<"$resolved" ||
    scenario_fail "the image $image in s1 does not resolve libclupy.so.0 to the package's:
$resolved"
done
echo "workers on s1 load /usr/lib/libclupy.so.0 (by soname) for" $images
echo "scenario ok"
