#!/usr/bin/env bash
# The bed removes what a run killed with SIGKILL left (its EXIT trap never ran): hosts'
# namespaces and every process in them, veths, the bridge, the run's folders. And a normal end
# leaves nothing either.
set -euo pipefail
source "$BED_SOURCE_DIR/tools/testbed.sh"
fail() {
  echo "FAILED: $*" >&2
  exit 1
}
leftovers() {
  {
    ip netns list | awk '{print $1}' | grep "^$BED_NS_PREFIX" || true
    ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' |
      grep -E "^($BED_BRIDGE|$BED_VETH_PREFIX)" || true
    if [ -e "$BED_STATE" ]; then echo "$BED_STATE"; fi
    if grep -q " $BED_STATE " /proc/self/mountinfo; then echo "the tmpfs on $BED_STATE"; fi
  } | tr '\n' ' '
}

# A run that makes two hosts with a process each, then is killed.
bash -c 'source "$BED_SOURCE_DIR/tools/testbed.sh"; bed_up "$BED_DEB"; bed_host a 21; bed_host b 22
  bed_spawn a sleeper sleep 600; echo made >"$BED_SHARED/made"; kill -KILL $$' || true
left="$(leftovers)"
[ -n "$left" ] || fail "the killed run left nothing behind: it did not run"
echo "a killed run left: $left"
pids="$(for ns in $(ip netns list | awk '{print $1}' | grep "^$BED_NS_PREFIX"); do ip netns pids "$ns"; done | tr '\n' ' ')"
[ -n "$pids" ] || fail "the killed run left no processes behind: it did not run"
identities="$(for pid in $pids; do bed_process_identity "$pid" || true; done | tr '\n' ' ')"

# The next run cleans all of it at its start, and its own end leaves nothing.
(
  bed_up "$BED_DEB"
  [ ! -e "$BED_STATE/made" ] || fail "the previous run's folder survived the next start"
  for ns in a b; do
    if ip netns list | grep -q "^$BED_NS_PREFIX$ns\b"; then fail "host $ns survived the next start"; fi
  done
  bed_host c 23
)
# bed_up waited for each of them to end (not only to leave its namespace's listing).
for process in $identities; do
  if bed_process_alive "$process"; then fail "process ${process%%:*} of the killed run survived"; fi
done
left="$(leftovers)"
[ -z "$left" ] || fail "left after a normal end: $left"
echo "the next start removed the killed run's hosts, processes ($pids), veths and bridge; the end left nothing"
echo "scenario ok"
