# Shared by the bed scenarios (sourced): the environment ctest gives (BED_* in CMakeLists.txt),
# the bed itself, and a cluster of a master host and server hosts as the .deb installs them:
# each daemon runs as the clupy user from /var/lib/clupy with the package's /etc/clupy YAML
# edited the way docs/operations.md says, and the units' ExecStart command line.
set -euo pipefail
for variable in BED_SOURCE_DIR BED_BUILD_DIR BED_DEB BED_CLIENT; do
  [ -n "${!variable:-}" ] || { echo "FAILED: $variable is not set (run through ctest)" >&2; exit 1; }
done
source "$BED_SOURCE_DIR/tools/testbed.sh"

MASTER_HOST=master
MASTER_PORT=7878
TOKEN="$BED_SHARED/cluster.token"

scenario_fail() {
  echo "FAILED: $*" >&2
  if [ -d "$BED_SHARED/logs" ]; then
    for log in "$BED_SHARED"/logs/*.log; do
      echo "--- tail of $(basename "$log")" >&2
      tail -n 15 "$log" >&2
    done
  fi
  exit 1
}

master_url() { echo "clupy://$(bed_addr "$MASTER_HOST"):$MASTER_PORT"; }

# start_master [YAML LINES...]: the master host at BED_SUBNET.10, bound to its address.
start_master() {
  [ -d "$BED_STATE/hosts/$MASTER_HOST" ] || bed_host "$MASTER_HOST" 10
  {
    echo "bind: 0.0.0.0"
    echo "port: $MASTER_PORT"
    echo "token_file: /shared/cluster.token"
    echo "data_dir: /var/lib/clupy/master"
    printf '%s\n' "$@"
  } >"$(bed_root "$MASTER_HOST")/etc/clupy/clupy.master.yaml"
  bed_spawn "$MASTER_HOST" master sh -c 'cd /var/lib/clupy &&
    exec runuser -u clupy -- clupy --master --config /etc/clupy/clupy.master.yaml'
  bed_wait_for "the master's token file" 20 test -s "$TOKEN"
  bed_wait_for "the master to answer" 20 cluster_info
}

# start_server NAME N [YAML LINES...]: a server host at BED_SUBNET.N.
start_server() {
  local name="$1" n="$2"
  shift 2
  [ -d "$BED_STATE/hosts/$name" ] || bed_host "$name" "$n"
  cp "$TOKEN" "$(bed_root "$name")/etc/clupy/cluster.token"
  bed_exec "$name" sh -c 'chown clupy:clupy /etc/clupy/cluster.token && chmod 0600 /etc/clupy/cluster.token'
  {
    echo "master_url: ${SERVER_MASTER_URL:-$(master_url)}"
    echo "token_file: /etc/clupy/cluster.token"
    echo "cache_dir: /var/lib/clupy/server-cache"
    echo "server_id: $name"
    printf '%s\n' "$@"
  } >"$(bed_root "$name")/etc/clupy/clupy.server.yaml"
  bed_spawn "$name" "server-$name" sh -c 'cd /var/lib/clupy &&
    BED_HISTORY=/shared/logs/history exec runuser -u clupy -- \
    clupy --serve --config /etc/clupy/clupy.server.yaml'
}

# start_relay NAME LISTEN_PORT TARGET DELAY_US [JITTER_US [SEED]]: a delaying relay on host NAME's
# link (in its network namespace) from BED_SUBNET.N:LISTEN_PORT to TARGET.
start_relay() {
  local name="$1" port="$2"
  shift 2
  [ -n "${BED_RELAY:-}" ] || scenario_fail "BED_RELAY is not set"
  nsenter --net="/run/netns/$(bed_ns "$name")" "$BED_RELAY" "$(bed_addr "$name"):$port" "$@" \
    </dev/null >"$BED_SHARED/logs/relay-$name-$port.log" 2>&1 {BED_LOCK_FD}>&- &
  disown $!
  bed_wait_for "the relay on $name:$port" 10 grep -q READY "$BED_SHARED/logs/relay-$name-$port.log"
}

# The master's registry as the main host sees it (JSON), through the build tree's clupy.
cluster_info() {
  CLUPY_TOKEN_FILE="$TOKEN" "$BED_BUILD_DIR/tools/clupy" info --master-url "$(master_url)" --json
}
connected_servers() { cluster_info | grep -o '"connected": *true' | wc -l; }
servers_connected_at_least() { [ "$(connected_servers)" -ge "$1" ]; }

# run_client LOG PROGRAM ARGS...: the program on the main host against the bed's master (or
# CLIENT_MASTER_URL; servers use SERVER_MASTER_URL when set, e.g. a relay's address).
run_client() {
  local log="$1"
  shift
  CLUPY_MASTER_URL="${CLIENT_MASTER_URL:-$(master_url)}" CLUPY_TOKEN_FILE="$TOKEN" "$@" >"$BED_SHARED/logs/$log.log" \
    2>"$BED_SHARED/logs/$log.stderr.log" {BED_LOCK_FD}>&-
}

# sudo: the servers install packages through it (dependencies.sh); a scenario may ask for more
# (BED_EXTRA_PACKAGES, set before sourcing this file), which makes a layer of its own.
bed_up "$BED_DEB" sudo ${BED_EXTRA_PACKAGES:-}
