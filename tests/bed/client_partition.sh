#!/usr/bin/env bash
# Scenario 5: the client's host (the main host) is cut off from the master in the middle of a
# job. Every unfinished future fails (unavailable) within the master's reservation_ttl of the
# cut (docs/operations.md), nothing hangs, the futures that had completed keep their values,
# and the master releases the client's reservations.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ttl_s=6
start_master "reservation_ttl: ${ttl_s}s"
start_server s1 11 "capacity: 2"
start_server s2 12 "capacity: 2"
bed_wait_for "two servers registered" 30 servers_connected_at_least 2

# 400 tasks of 50 ms on 4 slots: about 5 s of work; the cut comes after the first results.
tasks=400
run_client cut "$BED_CLIENT" slow "$tasks" 50 120 "$tasks" &
client=$!
BED_ON_EXIT="kill -KILL $client 2>/dev/null"
bed_wait_for "the job to start" 30 grep -q ' s[12] ' "$BED_SHARED/logs/history"
sleep 0.5
# The master's view must be read from its own host from now on.
registry() { bed_exec master clupy info --master-url "clupy://127.0.0.1:$MASTER_PORT" \
  --token-file /shared/cluster.token --json; }
reserved() { registry | grep -q '"reserved_by": *"[^"]'; }
reserved || scenario_fail "the client holds no reservation before the cut"
bed_partition master main
cut_at=$SECONDS
cut_ns=$(date +%s%N)
wait "$client" || true
client_s=$(( ($(date +%s%N) - cut_ns) / 1000000 ))
cat "$BED_SHARED/logs/cut.log"
read -r ok failed never twice wrong < <(awk '$1 == "OUTCOMES" {print $2, $3, $4, $5, $6}' \
  "$BED_SHARED/logs/cut.log")
[ "$never" = 0 ] && [ "$twice" = 0 ] && [ "$wrong" = 0 ] ||
  scenario_fail "futures left pending, completed twice or wrong"
[ "$ok" -gt 0 ] && [ "$failed" -gt 0 ] || scenario_fail "the cut did not fall in the middle of the job"
grep -q 'unavailable' "$BED_SHARED/logs/cut.log" || scenario_fail "the failures are not 'unavailable'"
[ "$client_s" -le $((ttl_s * 1000 + 3000)) ] ||
  scenario_fail "the futures failed ${client_s} ms after the cut (bound: reservation_ttl ${ttl_s} s + 3 s)"
echo "cut mid-job: $ok done, $failed failed as unavailable ${client_s} ms after the cut (bound $((ttl_s * 1000 + 3000)) ms)"

released() { ! reserved; }
bed_wait_for "the master to release the client's reservations" $((ttl_s + 5)) released
echo "the master released the reservations $((SECONDS - cut_at)) s after the cut"
bed_heal master main
echo "scenario ok"
