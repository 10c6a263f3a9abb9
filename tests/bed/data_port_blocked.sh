#!/usr/bin/env bash
# Scenario: a server host's data port is blocked from the program's host (silent drops of that
# port only) while the program pushes large calls and fetches held results. The program's dial
# of that port times out (5 s), so the calls of tasks placed there go through the master and
# their held results are fetched through the master; the other server's calls and results go
# straight. Every future ends once with its value, both servers run tasks, and the job's time is
# bounded. After the heal, a second job pushes straight to both servers.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

HTTP_PORT=7879
DATA_PORT=7900
push_timeout_s=30
tasks=24
kib=1024  # 1 MiB calls, and results of 1 MiB: both over the 64 KiB thresholds

start_master "http_port: $HTTP_PORT"
for i in 1 2; do
  start_server "s$i" "1$i" "capacity: 2" "data_bind: $BED_SUBNET.1$i" "data_port: $DATA_PORT" \
    "push_timeout: ${push_timeout_s}s" "http_port: $HTTP_PORT" "http_bind: 0.0.0.0"
done
bed_wait_for "two servers registered" 30 servers_connected_at_least 2

# /metrics of a host (the master's or a server's), with the cluster token (http_auth: loopback
# serves other addresses only with it).
metrics() {
  curl -sf --max-time 5 -H "Authorization: Bearer $(tr -d '[:space:]' <"$TOKEN")" \
    "http://$(bed_addr "$1"):$HTTP_PORT/metrics"
}
# metric HOST NAME: the value of an unlabelled metric, as an integer (0 when absent).
metric() {
  local text
  text="$(metrics "$1")" || scenario_fail "cannot read /metrics of $1"
  awk -v name="$2" '$1 == name {printf "%.0f", $2; found = 1} END {if (!found) print 0}' <<<"$text"
}
for host in master s1 s2; do bed_wait_for "/metrics of $host" 20 metrics "$host"; done
data_port_answers() { timeout 3 bash -c "</dev/tcp/$(bed_addr "$1")/$DATA_PORT"; }
data_port_answers s1 || scenario_fail "s1's data port does not answer before the block"

# The block: tcp to s1's data port from the main host, dropped silently in s1's namespace (a
# chain of its own, deleted to heal). The master's port and s1's HTTP side stay reachable.
bed_nft s1 add chain inet clupybed dataport "{ type filter hook input priority -1; }"
bed_nft s1 add rule inet clupybed dataport ip saddr "$(bed_addr main)" tcp dport "$DATA_PORT" drop
# Silently: the connect hangs until `timeout` ends it (124), it is not refused.
status=0
data_port_answers s1 || status=$?
[ "$status" -eq 124 ] || scenario_fail "a connect to s1's data port ended with $status, not timed out"
data_port_answers s2 || scenario_fail "s2's data port does not answer"
metrics s1 >/dev/null || scenario_fail "s1's HTTP side is blocked too"
echo "blocked: tcp from $(bed_addr main) to s1:$DATA_PORT times out; s2:$DATA_PORT and s1:$HTTP_PORT answer"

read_counters() {  # the counters the assertions compare, as shell variables PREFIX_name
  local prefix="$1"
  eval "${prefix}_relayed_calls=$(metric master clupy_pushed_call_bytes_relayed_total)"
  eval "${prefix}_relayed_results=$(metric master clupy_result_bytes_relayed_total)"
  eval "${prefix}_pushed_bytes=$(metric master clupy_call_bytes_pushed_total)"
  local s
  for s in s1 s2; do
    eval "${prefix}_${s}_pushed=$(metric "$s" clupy_server_calls_pushed_total)"
    eval "${prefix}_${s}_via_master=$(metric "$s" clupy_server_calls_pushed_via_master_total)"
    eval "${prefix}_${s}_results_pushed=$(metric "$s" clupy_server_results_pushed_total)"
    eval "${prefix}_${s}_served=$(metric "$s" clupy_server_result_bytes_served_total)"
  done
}
read_counters before

run_client blocked "$BED_CLIENT" big-echo "$tasks" "$kib" 120 || true
cat "$BED_SHARED/logs/blocked.log"
grep -q "^OUTCOMES $tasks 0 0 0 0\$" "$BED_SHARED/logs/blocked.log" ||
  scenario_fail "not every future ended once with its value while s1's data port was blocked"
ran_on() { awk -v s="$2" '$1 == "HOST" && $2 == s {n = $3} END {print n + 0}' "$BED_SHARED/logs/$1.log"; }
s1_ran="$(ran_on blocked s1)"
s2_ran="$(ran_on blocked s2)"
[ "$s1_ran" -gt 0 ] && [ "$s2_ran" -gt 0 ] || scenario_fail "s1 ran $s1_ran tasks, s2 $s2_ran: not both"
elapsed_ms="$(awk '$1 == "ELAPSED_MS" {print $2}' "$BED_SHARED/logs/blocked.log")"
read_counters blocked
echo "master: call bytes relayed $before_relayed_calls -> $blocked_relayed_calls," \
  "held result bytes relayed $before_relayed_results -> $blocked_relayed_results," \
  "call bytes of pushed calls (straight or relayed) $before_pushed_bytes -> $blocked_pushed_bytes"
for s in s1 s2; do
  eval "echo \"$s: calls pushed straight \$before_${s}_pushed -> \$blocked_${s}_pushed," \
    "through the master \$before_${s}_via_master -> \$blocked_${s}_via_master," \
    "results sent back on the push connection \$before_${s}_results_pushed -> \$blocked_${s}_results_pushed," \
    "held bytes served on the data port \$before_${s}_served -> \$blocked_${s}_served\""
done
# s1: every call through the master, none on its data port, nothing served there.
[ "$blocked_s1_via_master" -gt "$before_s1_via_master" ] ||
  scenario_fail "no call of s1 came through the master"
[ "$blocked_s1_pushed" -eq "$before_s1_pushed" ] ||
  scenario_fail "s1 got calls on its blocked data port"
[ "$blocked_s1_served" -eq "$before_s1_served" ] ||
  scenario_fail "s1 served held results on its blocked data port"
[ $((blocked_s1_via_master - before_s1_via_master)) -eq "$s1_ran" ] ||
  scenario_fail "s1 ran $s1_ran tasks but got $((blocked_s1_via_master - before_s1_via_master)) calls through the master"
# The master carried each of those calls and each of s1's held results (at least 1 MiB apiece).
bytes=$((kib * 1024))
[ $((blocked_relayed_calls - before_relayed_calls)) -ge $((s1_ran * bytes)) ] ||
  scenario_fail "the master relayed fewer call bytes than s1's $s1_ran calls"
[ $((blocked_relayed_results - before_relayed_results)) -ge $((s1_ran * bytes)) ] ||
  scenario_fail "the master relayed fewer held result bytes than s1's $s1_ran results"
# s2: every call straight, its held outcomes back on the same connection.
[ $((blocked_s2_pushed - before_s2_pushed)) -eq "$s2_ran" ] ||
  scenario_fail "s2 ran $s2_ran tasks but got $((blocked_s2_pushed - before_s2_pushed)) calls on its data port"
[ "$blocked_s2_via_master" -eq "$before_s2_via_master" ] ||
  scenario_fail "a call of s2 went through the master"
[ $((blocked_s2_results_pushed - before_s2_results_pushed)) -eq "$s2_ran" ] ||
  scenario_fail "not every held result of s2 came back on its push connection"
# Bounded: the first dial to s1's data port times out after 5 s, and the client does not dial it
# again for 30 s: s1's later pushes and its held results' fetches go through the master at once
# (a dial per batch would cost 5 s each). So the job takes one dial timeout and its work (about
# 0.1 s healed), far within push_timeout: no call went missing (that would cost a placement).
bound_ms=9000
[ "$elapsed_ms" -lt "$bound_ms" ] ||
  scenario_fail "the job took $elapsed_ms ms with s1's data port blocked (bound: one 5 s dial timeout and the work, ${bound_ms} ms)"
missing="$(metric master clupy_calls_missing_total)"
[ "$missing" -eq 0 ] || scenario_fail "$missing call(s) went missing on their server"
echo "blocked: $tasks calls of $kib KiB right in $elapsed_ms ms (bound ${bound_ms} ms)"

# Heal: s1's data port answers again, and a new job pushes straight to both servers.
bed_nft s1 delete chain inet clupybed dataport
data_port_answers s1 || scenario_fail "s1's data port does not answer after the heal"
run_client healed "$BED_CLIENT" big-echo "$tasks" "$kib" 120 || true
cat "$BED_SHARED/logs/healed.log"
grep -q "^OUTCOMES $tasks 0 0 0 0\$" "$BED_SHARED/logs/healed.log" ||
  scenario_fail "not every future ended once with its value after the heal"
healed_ms="$(awk '$1 == "ELAPSED_MS" {print $2}' "$BED_SHARED/logs/healed.log")"
read_counters healed
echo "healed: s1 calls pushed straight $blocked_s1_pushed -> $healed_s1_pushed," \
  "through the master $blocked_s1_via_master -> $healed_s1_via_master;" \
  "master call bytes relayed $blocked_relayed_calls -> $healed_relayed_calls," \
  "held result bytes relayed $blocked_relayed_results -> $healed_relayed_results"
s1_after="$(ran_on healed s1)"
[ "$s1_after" -gt 0 ] || scenario_fail "s1 ran none of the tasks after the heal"
[ $((healed_s1_pushed - blocked_s1_pushed)) -eq "$s1_after" ] ||
  scenario_fail "s1 ran $s1_after tasks after the heal but got $((healed_s1_pushed - blocked_s1_pushed)) calls on its data port"
[ "$healed_s1_via_master" -eq "$blocked_s1_via_master" ] &&
  [ "$healed_relayed_calls" -eq "$blocked_relayed_calls" ] &&
  [ "$healed_relayed_results" -eq "$blocked_relayed_results" ] ||
  scenario_fail "calls or held results still went through the master after the heal"
echo "healed: $tasks calls right in $healed_ms ms, all straight (s1 ran $s1_after)"
echo "scenario ok"
