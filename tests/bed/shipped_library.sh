#!/usr/bin/env bash
# Scenario: the program of the missing-library scenario, linked against a library only the main
# host has, shipped through its clupy.client.dependency.yaml (docs/dependencies.md#libraries-
# shipped-from-the-client). Without the file init refuses it, naming the library and each
# server; with it, the master (allow_client_libraries: true) takes the library from the client,
# the two server hosts fetch it into their caches, and every task runs there with the right
# value. The time a job's first task waits for the shipped library (job opened -> each server
# has it, as the client logs it) is measured over 5 runs with the servers' caches emptied, and
# 5 with the library cached.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ -n "${BED_MISSING_LIB_CLIENT:-}" ] || scenario_fail "BED_MISSING_LIB_CLIENT is not set"

bed_host "$MASTER_HOST" 10
echo "allow_client_libraries: true" >"$(bed_root "$MASTER_HOST")/etc/clupy/deps.yaml"
start_master "dependency_file: /etc/clupy/deps.yaml"
start_server s1 11 "capacity: 2"
start_server s2 12 "capacity: 2"
bed_wait_for "both servers registered" 30 servers_connected_at_least 2

status=0
run_client refused "$BED_MISSING_LIB_CLIENT" || status=$?
[ "$status" -eq 3 ] || scenario_fail "init did not refuse the unshipped program (exit $status)"
for server in s1 s2; do
  grep -q "server $server: libbed_only_here.so is missing" "$BED_SHARED/logs/refused.log" ||
    scenario_fail "the refusal does not name $server and the library"
done
echo "without shipping: init refused the program naming libbed_only_here.so on s1 and s2"

printf 'libraries:\n  - soname: libbed_only_here.so\n' >"$BED_SHARED/ship.yaml"
echo "log_level: info" >"$BED_SHARED/client.yaml"
# run_shipped NAME FILE: runs the program shipping the library; appends each server's wait (ms)
# to FILE.
run_shipped() {
  local name="$1" out="$2" log="$BED_SHARED/logs/$1.log" err="$BED_SHARED/logs/$1.stderr.log" wait
  CLUPY_DEPENDENCY_FILE="$BED_SHARED/ship.yaml" CLUPY_CLIENT_CONFIG="$BED_SHARED/client.yaml" \
    run_client "$name" "$BED_MISSING_LIB_CLIENT" || scenario_fail "$name: the program failed: $(cat "$err")"
  grep -q '^OK 6$' "$log" || scenario_fail "$name: not every task ran: $(cat "$log" "$err")"
  for server in s1 s2; do
    wait="$(sed -n "s/.*server $server has this job's libraries (\([0-9]*\) ms after the job was opened).*/\1/p" "$err" | head -n 1)"
    [ -n "$wait" ] || scenario_fail "$name: the client does not say when $server had the library"
    echo "$wait" >>"$out"
  done
}
median() { sort -n | awk '{v[NR] = $1} END {printf "%d ms (%d-%d, %d values)", v[int((NR + 1) / 2)], v[1], v[NR], NR}'; }

fetched="$BED_SHARED/fetched.ms"
cached="$BED_SHARED/cached.ms"
: >"$fetched"
: >"$cached"
for run in 1 2 3 4 5; do
  for server in s1 s2; do
    bed_exec "$server" sh -c 'cache=/var/lib/clupy/server-cache/libraries
      [ ! -d "$cache" ] || find "$cache" -maxdepth 1 -type f -delete'
  done
  run_shipped "cold-$run" "$fetched"
  run_shipped "warm-$run" "$cached"
done
for server in s1 s2; do
  grep -q 'library libbed_only_here.so fetched' "$BED_SHARED/logs/server-$server.log" ||
    scenario_fail "$server did not fetch the library"
  bed_exec "$server" sh -c 'ls /var/lib/clupy/server-cache/libraries/sets/ | grep -q "^job-"' ||
    scenario_fail "$server has no folder of the job's libraries"
done
echo "6 tasks ran on s1 and s2 with the shipped library, 10 runs"
echo "job opened -> a server has the shipped library, fetched from the master: $(median <"$fetched")"
echo "job opened -> a server has the shipped library, cached: $(median <"$cached")"

# A job that does not ship it is still refused: the library is no server's but the shipping job's.
status=0
run_client refused-again "$BED_MISSING_LIB_CLIENT" || status=$?
[ "$status" -eq 3 ] || scenario_fail "a job not shipping the library was not refused (exit $status)"
echo "scenario ok"
