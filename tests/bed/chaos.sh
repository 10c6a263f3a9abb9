# Seeded, bounded chaos for bed scenarios (sourced after common.sh), and the checker of its
# outcome. Reusable: a scenario starts its cluster and its job, then
#   chaos_drive SEED SECONDS HOST...     # faults on random HOSTs until SECONDS have passed
#   chaos_check HISTORY CLIENT_LOG TASKS # every future once and right, executions accounted for
# The driver logs each fault to $BED_SHARED/logs/chaos.log ("<t_ms> <action> <host> <ms>");
# the same seed gives the same faults in the same order.
# Faults: kill (SIGKILL of every process of the host, server restarted after the pause), stop
# (SIGSTOP, then SIGCONT after the pause), cut (partition from the master, healed after it).
# Pauses are 0.3-4 s, so some outlast a 3 s registration_ttl and some do not.

CHAOS_LOG="$BED_SHARED/logs/chaos.log"

chaos_drive() {
  local seed="$1" seconds="$2"
  shift 2
  local hosts=("$@")
  RANDOM=$seed
  echo "chaos: seed $seed, ${seconds}s, hosts ${hosts[*]}"
  local start=$SECONDS start_ns
  start_ns=$(date +%s%N)
  : >"$CHAOS_LOG"
  while [ $((SECONDS - start)) -lt "$seconds" ]; do
    local host="${hosts[RANDOM % ${#hosts[@]}]}"
    local action=$((RANDOM % 3))
    local pause_ms=$((300 + RANDOM % 3700))
    local pause_s
    pause_s=$(printf '%d.%03d' $((pause_ms / 1000)) $((pause_ms % 1000)))
    local at_ms=$((($(date +%s%N) - start_ns) / 1000000))
    case $action in
      0)
        echo "$at_ms kill $host $pause_ms" >>"$CHAOS_LOG"
        bed_signal "$host" KILL
        sleep "$pause_s"
        chaos_restart_server "$host"
        ;;
      1)
        echo "$at_ms stop $host $pause_ms" >>"$CHAOS_LOG"
        bed_signal "$host" STOP
        sleep "$pause_s"
        bed_signal "$host" CONT
        ;;
      2)
        echo "$at_ms cut $host $pause_ms" >>"$CHAOS_LOG"
        bed_partition "$host" "$MASTER_HOST"
        sleep "$pause_s"
        bed_heal "$host" "$MASTER_HOST"
        ;;
    esac
    sleep "0.$((RANDOM % 10))"  # a calm moment between faults
  done
  echo "chaos: $(wc -l <"$CHAOS_LOG") faults: $(awk '{print $2}' "$CHAOS_LOG" | sort | uniq -c | tr '\n' ' ')"
}

# The server of a killed host, started again the way start_server first started it.
chaos_restart_server() {
  local host="$1"
  bed_spawn "$host" "server-$host-$(date +%s%N)" sh -c 'cd /var/lib/clupy &&
    BED_HISTORY=/shared/logs/history exec runuser -u clupy -- \
    clupy --serve --config /etc/clupy/clupy.server.yaml'
}

# chaos_check HISTORY CLIENT_LOG TASKS: the client saw every future complete exactly once with
# the right value and none failed (lost = 0); the history holds every task; every task that ran
# more than once ran its extra times on hosts the driver faulted.
chaos_check() {
  local history="$1" client_log="$2" tasks="$3"
  grep -q "^OUTCOMES $tasks 0 0 0 0\$" "$client_log" ||
    scenario_fail "chaos: not every future completed once with its value: $(grep OUTCOMES "$client_log")"
  local distinct executions
  distinct="$(awk '{print $1}' "$history" | sort -u | wc -l)"
  executions="$(wc -l <"$history")"
  [ "$distinct" -eq "$tasks" ] || scenario_fail "chaos: the history holds $distinct tasks, not $tasks"
  local faulted unaccounted
  faulted="$(awk '{print $3}' "$CHAOS_LOG" | sort -u | tr '\n' ' ')"
  unaccounted="$(awk -v faulted=" $faulted" '
      { runs[$1]++; if (index(faulted, " " $2 " ") == 0) clean[$1]++ }
      END { n = 0; for (t in runs) if (clean[t] > 1) n++; print n }' "$history")"
  [ "$unaccounted" -eq 0 ] ||
    scenario_fail "chaos: $unaccounted tasks ran more than once on hosts that had no fault"
  echo "chaos check: $tasks futures once and right, lost 0; $executions executions," \
    "$((executions - tasks)) extra, all on faulted hosts ($faulted)"
}
