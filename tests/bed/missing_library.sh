#!/usr/bin/env bash
# Scenario 2: a program linked against a shared library that exists only on the main host.
# First, as users run it (dependency_check: warn): init refuses it before any task is sent,
# naming the library and the server (docs/dependencies.md#programs). Then with the check off:
# its workers cannot load on the server host (the dynamic loader exits 127): every task fails
# fast with a message naming the library and the server's host, the server starts no new worker
# for that program (no restart loop), and it still runs other programs' tasks.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ -n "${BED_MISSING_LIB_CLIENT:-}" ] || scenario_fail "BED_MISSING_LIB_CLIENT is not set"

start_master
start_server s1 11 "capacity: 2"
bed_wait_for "the server registered" 30 servers_connected_at_least 1

status=0
run_client refused "$BED_MISSING_LIB_CLIENT" || status=$?
cat "$BED_SHARED/logs/refused.log"
[ "$status" -eq 3 ] || scenario_fail "init did not refuse the program (exit $status)"
grep -q '^REFUSED no server can run this program' "$BED_SHARED/logs/refused.log" ||
  scenario_fail "the refusal does not say that no server can run it"
grep -q 'server s1: libbed_only_here.so is missing' "$BED_SHARED/logs/refused.log" ||
  scenario_fail "the refusal does not name the server and the library"
echo "init refused the program naming libbed_only_here.so and server s1"

CLUPY_DEPENDENCY_CHECK=off run_client missing "$BED_MISSING_LIB_CLIENT" ||
  scenario_fail "the client program failed"
log="$BED_SHARED/logs/missing.log"
cat "$log"
grep -q '^OK 0$' "$log" || scenario_fail "some tasks ran although their library is missing"
if grep -q '^PENDING' "$log"; then scenario_fail "tasks hung instead of failing"; fi
[ "$(grep -c '^FAILURE ' "$log")" -eq 6 ] || scenario_fail "not every task failed"
grep '^FAILURE ' "$log" | while read -r line; do
  grep -q 'libbed_only_here.so' <<<"$line" || scenario_fail "a failure does not name the library: $line"
  grep -q '(host s1)' <<<"$line" || scenario_fail "a failure does not name the server host: $line"
done
elapsed="$(awk '$1 == "ELAPSED_MS" {print $2}' "$log")"
[ "$elapsed" -lt 10000 ] || scenario_fail "the failures took ${elapsed} ms (more than 10 s)"
# At most one worker per slot tried to start: no restart loop.
starts="$(grep -c 'cannot start the program on server' "$BED_SHARED/logs/server-s1.log" || true)"
[ "$starts" -ge 1 ] && [ "$starts" -le 2 ] ||
  scenario_fail "the server logged $starts failed worker starts (expected 1 or 2)"
echo "6 tasks failed in ${elapsed} ms naming libbed_only_here.so and host s1; $starts worker start(s)"

# The same server still runs a program it can load.
run_client spread "$BED_CLIENT" spread 200 || true
grep -q '^OUTCOMES 200 0 0 0 0$' "$BED_SHARED/logs/spread.log" ||
  scenario_fail "the server no longer runs other programs: $(cat "$BED_SHARED/logs/spread.log")"
echo "scenario ok"
