#!/usr/bin/env bash
# Scenario 6: standby masters on two hosts (ma, mb), ZooKeeper on a third (zk), three server
# hosts and the client on the main host, all given zk://. What docs/coordination.md promises
# (the failover timeline and fencing), checked across hosts:
#   1. the leader ma is SIGKILLed mid-job: mb is elected about one session timeout later, the
#      servers register with it, and every future of the job completes exactly once with its
#      value (the client resubmits what it had not received; reruns are at-least-once);
#   2. ma comes back as a standby; the new leader mb is cut off from ZooKeeper only (it still
#      reaches the servers and the client) mid-job: mb stops dispatching and exits (status 75:
#      "leadership lost") before ma is elected, the servers follow ma, every future once and right.
# In both, the workers' history (/shared/logs/history: task, host, pid, start, end, and the
# fencing token of the master that dispatched the execution, from clupy::this_task()) holds
# exactly the two masters' tokens, and every execution of the old master's ended before the first
# of the new master's began: no task ran for two masters at once. Also by the masters' log times:
# no execution started before the old leader stopped and ended after the new one was elected.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

session_timeout_s=3
zk_port=2181
bed_host zk 30
bed_host ma 10
bed_host mb 20
zk_url="zk://$(bed_addr zk):$zk_port/clupy"

# ZooKeeper in host zk's network namespace, from the main host's files (the bed's layer has no
# Java): what matters here is that it is reached over zk's own address and can be cut off.
zk_dir="$BED_STATE/zookeeper"
mkdir -p "$zk_dir/data"
cat >"$zk_dir/zoo.cfg" <<EOF
tickTime=1000
initLimit=10
syncLimit=5
dataDir=$zk_dir/data
clientPort=$zk_port
clientPortAddress=$(bed_addr zk)
admin.enableServer=false
4lw.commands.whitelist=srvr
maxClientCnxns=0
EOF
cat >"$zk_dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p %c{1}: %m%n
EOF
for jar in zookeeper slf4j-log4j12 log4j-1.2; do
  [ -e "/usr/share/java/$jar.jar" ] || scenario_fail "/usr/share/java/$jar.jar is missing (Debian's zookeeper)"
done
nsenter --net="/run/netns/$(bed_ns zk)" java -Xms16m -Xmx256m -XX:+UseSerialGC \
  -XX:TieredStopAtLevel=1 -Xss512k -XX:-UsePerfData -Djava.net.preferIPv4Stack=true \
  -cp "$zk_dir:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar" \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$zk_dir/zoo.cfg" \
  </dev/null >"$BED_SHARED/logs/zookeeper.log" 2>&1 {BED_LOCK_FD}>&- &
disown $!
zk_serving() {
  exec 3<>"/dev/tcp/$(bed_addr zk)/$zk_port" || return 1
  echo srvr >&3
  grep -q 'Mode: standalone' <&3
  local status=$?
  exec 3<&-
  return $status
}
bed_wait_for "ZooKeeper on host zk" 30 zk_serving

# start_master_host NAME LOG: a master of the election, advertising its host's own address.
start_master_host() {
  local name="$1" log="$2"
  cat >"$(bed_root "$name")/etc/clupy/clupy.master.yaml" <<EOF
bind: 0.0.0.0
port: $MASTER_PORT
token_file: /shared/cluster.token
data_dir: /var/lib/clupy/master
coordination:
  connect: $(bed_addr zk):$zk_port/clupy
  session_timeout: ${session_timeout_s}s
  advertise: $(bed_addr "$name")
EOF
  bed_spawn "$name" "$log" sh -c 'cd /var/lib/clupy &&
    runuser -u clupy -- clupy --master --config /etc/clupy/clupy.master.yaml
    echo "MASTER_EXIT_STATUS $?"'
}
master_log() { echo "$BED_SHARED/logs/$1.log"; }
log_has() { grep -q "$2" "$(master_log "$1")"; }
# The Unix time in microseconds of the first line of LOG matching PATTERN (the daemons log UTC).
log_time_us() {
  local stamp
  stamp="$(grep -m1 "$2" "$(master_log "$1")" | cut -d' ' -f1)"
  [ -n "$stamp" ] || scenario_fail "no line '$2' in $1.log"
  TZ=UTC date -d "$stamp" +%s%6N
}
registered_with() {  # registered_with LOG: the three servers registered with that master
  local server
  for server in s1 s2 s3; do
    grep -qE "server $server (re-)?registered" "$(master_log "$1")" || return 1
  done
}
info_of() {
  CLUPY_TOKEN_FILE="$TOKEN" "$BED_BUILD_DIR/tools/clupy" info \
    --master-url "clupy://$(bed_addr "$1"):$MASTER_PORT" --json
}
three_connected_to() { [ "$(info_of "$1" | grep -o '"connected": *true' | wc -l)" -ge 3 ]; }

start_master_host ma master-ma
bed_wait_for "ma elected" 30 log_has master-ma "elected master"
start_master_host mb master-mb
bed_wait_for "mb waiting as a standby" 30 log_has master-mb "standby master: waiting"
export SERVER_MASTER_URL="$zk_url" CLIENT_MASTER_URL="$zk_url"
for i in 1 2 3; do start_server "s$i" "1$i" "capacity: 2"; done
bed_wait_for "three servers registered with ma" 30 three_connected_to ma
echo "ZooKeeper on zk ($(bed_addr zk)); ma leads, mb waits; s1 s2 s3 registered through $zk_url"

history="$BED_SHARED/logs/history"
tasks=300
now_us() { date +%s%6N; }
history_has_at_least() { [ "$(wc -l <"$history" 2>/dev/null || echo 0)" -ge "$1" ]; }

# The fencing token MASTER_LOG's master logged when it was elected.
elected_token() {
  local token
  token="$(grep -m1 -o 'elected master (fencing token [0-9]*' "$(master_log "$1")" | grep -o '[0-9]*$')"
  [ -n "$token" ] || scenario_fail "$1.log names no fencing token"
  echo "$token"
}

# check_job LOG OLD_STOP_US NEW_ELECTED_US OLD_MASTER NEW_MASTER: every future once and right;
# the history's executions by master token: only the two masters' tokens, the old one's all
# ended before the new one's first began; no execution spans the handover; prints the reruns.
check_job() {
  local log="$1" old_stop="$2" new_elected="$3" old_token new_token by_token
  old_token="$(elected_token "$4")"
  new_token="$(elected_token "$5")"
  [ "$new_token" -gt "$old_token" ] ||
    scenario_fail "$log: the new master's token $new_token is not above the old one's $old_token"
  # token executions first_start last_end, for each token in the history
  by_token="$(awk '{ n[$6]++
                     if (!($6 in first) || $4 < first[$6]) first[$6] = $4
                     if ($5 > last[$6]) last[$6] = $5 }
                   END { for (t in n) print t, n[t], first[t], last[t] }' "$history" | sort -n)"
  echo "$log: executions by master token (token count first_start_us last_end_us):"
  echo "$by_token"
  [ "$(echo "$by_token" | awk '{print $1}' | tr '\n' ' ')" = "$old_token $new_token " ] ||
    scenario_fail "$log: the history's master tokens are not exactly $old_token then $new_token"
  local old_last_end new_first_start
  old_last_end="$(echo "$by_token" | awk -v t="$old_token" '$1 == t {print $4}')"
  new_first_start="$(echo "$by_token" | awk -v t="$new_token" '$1 == t {print $3}')"
  [ "$old_last_end" -le "$new_first_start" ] ||
    scenario_fail "$log: an execution for master $old_token ended at $old_last_end, after one for master $new_token began at $new_first_start"
  cat "$BED_SHARED/logs/$log.log"
  grep -q "^OUTCOMES $tasks 0 0 0 0\$" "$BED_SHARED/logs/$log.log" ||
    scenario_fail "$log: not every future completed exactly once with its value"
  local distinct spanning twice
  distinct="$(awk '{print $1}' "$history" | sort -u | wc -l)"
  [ "$distinct" -eq "$tasks" ] || scenario_fail "$log: the history has $distinct tasks, not $tasks"
  spanning="$(awk -v a="$old_stop" -v b="$new_elected" '$4 < a && $5 > b' "$history" | wc -l)"
  [ "$spanning" -eq 0 ] ||
    scenario_fail "$log: $spanning execution(s) began under the old master and ended after the new one was elected"
  twice="$(awk '{n[$1]++} END {c = 0; for (t in n) if (n[t] > 1) c++; print c}' "$history")"
  echo "$log: $tasks futures once and right; $(wc -l <"$history") executions, $twice task(s) ran" \
    "twice (resubmitted at the failover); none for two masters at once"
}

# 1. SIGKILL of the leader mid-job.
rm -f "$history"  # the workers (user clupy) create it
run_client killed "$BED_CLIENT" slow "$tasks" 100 120 0 3 &
client=$!
BED_ON_EXIT="kill -KILL $client 2>/dev/null"
bed_wait_for "the job to run on the servers" 30 history_has_at_least 30
killed_us="$(now_us)"
bed_signal ma KILL
bed_wait_for "mb elected after ma's session expired" 30 log_has master-mb "elected master"
elected_us="$(log_time_us master-mb "elected master")"
wait "$client" || true
check_job killed "$killed_us" "$elected_us" master-ma master-mb
bed_wait_for "the servers registered with mb" 30 registered_with master-mb
bed_wait_for "three servers connected to mb" 30 three_connected_to mb
takeover_ms=$(((elected_us - killed_us) / 1000))
echo "ma killed -> mb elected: $takeover_ms ms (session timeout ${session_timeout_s} s); s1 s2 s3 follow mb"
[ "$takeover_ms" -ge $((session_timeout_s * 1000 / 2)) ] ||
  scenario_fail "mb was elected $takeover_ms ms after the kill: before ma's session could expire"

# 2. ma back as a standby (a supervisor's restart); the leader mb cut off from ZooKeeper only.
start_master_host ma master-ma-2
bed_wait_for "ma waiting as a standby" 30 log_has master-ma-2 "standby master: waiting"
rm -f "$history"  # the workers (user clupy) create it
run_client cut "$BED_CLIENT" slow "$tasks" 100 120 0 3 &
client=$!
BED_ON_EXIT="kill -KILL $client 2>/dev/null"
bed_wait_for "the job to run on the servers" 30 history_has_at_least 30
cut_us="$(now_us)"
bed_partition mb zk
bed_wait_for "ma elected after mb lost ZooKeeper" 30 log_has master-ma-2 "elected master"
bed_wait_for "mb to exit" 30 log_has master-mb "MASTER_EXIT_STATUS"
log_has master-mb "MASTER_EXIT_STATUS 75" ||
  scenario_fail "mb exited with $(grep MASTER_EXIT_STATUS "$(master_log master-mb)"), not 75 (leadership lost)"
stopped_us="$(log_time_us master-mb "is no longer the master")"
elected_us="$(log_time_us master-ma-2 "elected master")"
[ "$stopped_us" -lt "$elected_us" ] ||
  scenario_fail "mb stopped dispatching at $stopped_us, after ma was elected at $elected_us"
wait "$client" || true
check_job cut "$stopped_us" "$elected_us" master-mb master-ma-2
bed_wait_for "the servers registered with ma" 30 registered_with master-ma-2
bed_wait_for "three servers connected to ma" 30 three_connected_to ma
bed_heal mb zk
echo "mb cut off from ZooKeeper -> mb stops dispatching: $(((stopped_us - cut_us) / 1000)) ms;" \
  "-> ma elected: $(((elected_us - cut_us) / 1000)) ms (mb stopped $(((elected_us - stopped_us) / 1000)) ms" \
  "before); mb exited 75; s1 s2 s3 follow ma"
echo "scenario ok"
