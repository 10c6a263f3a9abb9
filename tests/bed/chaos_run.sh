#!/usr/bin/env bash
# Scenario 7: seeded chaos. Three server hosts run a 50,000-task job with retries while the
# driver (chaos.sh) SIGKILLs and SIGSTOPs random servers and cuts and heals their links to the
# master for a bounded time; the checker then finds every future completed exactly once with
# its value, no task lost, and every extra execution on a faulted host. The seed is printed;
# BED_CHAOS_SEED replays a run.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/chaos.sh"

seed="${BED_CHAOS_SEED:-$(( $(date +%s) % 100000 ))}"
tasks="${BED_CHAOS_TASKS:-50000}"
seconds="${BED_CHAOS_SECONDS:-40}"
echo "chaos seed $seed (replay: BED_CHAOS_SEED=$seed)"
start_master "registration_ttl: 3s"
for i in 1 2 3; do start_server "s$i" "1$i" "capacity: 2"; done
bed_wait_for "three servers registered" 30 servers_connected_at_least 3

# Tasks of 2 ms: 50,000 of them keep six slots busy for about 20 s, longer under faults.
run_client chaos-client "$BED_CLIENT" slow "$tasks" 2 600 0 100 &
client=$!
BED_ON_EXIT="kill -KILL $client 2>/dev/null"
bed_wait_for "the job to start" 60 test -s "$BED_SHARED/logs/history"
chaos_drive "$seed" "$seconds" s1 s2 s3
# Every host back: servers running again and registered, so the job can finish.
for host in s1 s2 s3; do
  bed_signal "$host" CONT
  bed_exec "$host" sh -c 'for p in /proc/[0-9]*; do
      [ "$(cat $p/comm 2>/dev/null)" = clupy ] && exit 0; done; exit 1' ||
    chaos_restart_server "$host"
done
wait "$client" || true
grep -E '^(HOST|OUTCOMES|ELAPSED|FAILURE)' "$BED_SHARED/logs/chaos-client.log" || true
chaos_check "$BED_SHARED/logs/history" "$BED_SHARED/logs/chaos-client.log" "$tasks"
echo "scenario ok"
