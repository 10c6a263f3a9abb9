#!/usr/bin/env bash
# The test bed: separate hosts on this one machine, for tests and benchmarks.
#
# A host is a network namespace with its own address on a private bridge (BED_SUBNET.0/24,
# nothing routed beyond it) and its own root filesystem: an overlay over a Debian minbase that
# holds the dependencies of the project's .deb and the .deb itself (dpkg -i), nothing else. The
# main host (the root namespace) is on the bridge too, at BED_SUBNET.1. Each host has its own
# mount, UTS (hostname), IPC and PID namespaces, /proc, and /shared: a folder shared by all
# hosts and the main host (logs, histories), $BED_SHARED outside.
#
# Use it from a bash test by sourcing it:
#   source tools/testbed.sh
#   bed_up build/clupy_0.1.0_amd64.deb           # lock, clean leftovers, install the .deb
#   bed_host master 10; bed_host s1 11            # hosts with addresses BED_SUBNET.10, .11
#   bed_spawn master master clupy --master ...    # a daemon in a host, logs in $BED_SHARED/logs
#   bed_exec s1 cat /etc/hostname                 # a command in a host, waited for
#   echo x >"$(bed_root s1)/etc/clupy/x"           # a host's files, from the main host
#   bed_partition s1 master; bed_heal s1 master   # silent drop both ways, and back
#   bed_signal s1 KILL                            # SIGKILL (or STOP, CONT) of a host's processes
#   bed_loss s1 10                                # drop 10 of every 10000 packets leaving s1
# bed_up installs an EXIT trap that removes everything the bed made (processes, namespaces,
# veths, the bridge, the hosts' overlays and folders); tests put their own clean-up in
# BED_ON_EXIT (a command run first). A run killed with SIGKILL leaves its remains, which the next
# bed_up (or `tools/testbed.sh clean`) removes. One bed runs at a time on a machine (a lock).
#
# Run as a command: tools/testbed.sh prepare [DEB]   makes the cached root filesystems
#                   tools/testbed.sh clean           removes what a killed run left
# Needs root, debootstrap, zstd, nft, ip, nsenter, unshare (tools/install-deps.sh). A failure to
# start says why and exits non-zero: a test that cannot run fails, it never skips.

BED_CACHE="${CLUPY_TESTBED_CACHE:-/var/cache/clupy-testbed}"  # survives between CI runs
BED_STATE="${CLUPY_TESTBED_STATE:-/var/tmp/clupy-testbed}"    # this run's hosts
BED_SHARED="$BED_STATE/shared"
BED_SUBNET="${CLUPY_TESTBED_SUBNET:-10.77.0}"
BED_BRIDGE=clupybed0
BED_NS_PREFIX=clupybed-
BED_VETH_PREFIX=clupyv
BED_LOCK_FILE=/run/clupy-testbed.lock
BED_SUITE=bookworm
BED_ON_EXIT="${BED_ON_EXIT:-}"
BED_LOGS_OUT="${BED_LOGS_OUT:-}"  # where bed_down copies $BED_SHARED/logs, when set

bed_log() { echo "testbed: $*" >&2; }
bed_fail() {
  echo "testbed: FAILED: $*" >&2
  exit 1
}

bed_check_tools() {
  [ "$(id -u)" -eq 0 ] || bed_fail "the test bed needs root (network namespaces, mounts, chroot)"
  local tool
  for tool in debootstrap zstd nft ip nsenter unshare chroot dpkg-deb; do
    command -v "$tool" >/dev/null || bed_fail "$tool is missing (tools/install-deps.sh installs it)"
  done
  [ -e /proc/self/ns/net ] || bed_fail "this kernel has no network namespaces"
}

# The Debian mirror apt already uses for the suite's main component.
bed_mirror() {
  apt-cache policy 2>/dev/null |
    awk -v s="$BED_SUITE/main" '$3 == s && $2 ~ /^https?:\/\// {print $2; exit}'
}

# Runs "$@" holding the cache's lock (another run may be filling the cache).
bed_with_cache_lock() {
  mkdir -p "$BED_CACHE"
  (
    flock -w 900 9 || bed_fail "waited 15 minutes for $BED_CACHE/.lock"
    "$@"
  ) 9>"$BED_CACHE/.lock"
}

# The suite's minbase as a tarball, made with debootstrap once per machine. Prints its path.
bed_base_tarball() {
  local tarball="$BED_CACHE/$BED_SUITE-minbase.tar.zst"
  [ -s "$tarball" ] || bed_with_cache_lock bed_make_base "$tarball" || exit 1
  echo "$tarball"
}

bed_make_base() {
  local tarball="$1"
  [ -s "$tarball" ] && return 0
  local mirror dir
  mirror="$(bed_mirror)"
  [ -n "$mirror" ] || { apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null 2>&1; mirror="$(bed_mirror)"; }
  [ -n "$mirror" ] || bed_fail "no $BED_SUITE mirror in apt's sources (apt-get update first)"
  dir="$(mktemp -d "$BED_CACHE/.base.XXXXXX")"
  bed_log "making the $BED_SUITE minbase root filesystem with debootstrap (once per machine)"
  if ! debootstrap --variant=minbase "$BED_SUITE" "$dir" "$mirror" >"$dir.log" 2>&1; then
    tail -n 20 "$dir.log" >&2
    rm -rf "$dir" "$dir.log"
    bed_fail "debootstrap of $BED_SUITE from $mirror failed"
  fi
  chroot "$dir" apt-get clean
  tar -C "$dir" --numeric-owner -cf - . | zstd -T0 -3 -q -o "$tarball.part"
  mv "$tarball.part" "$tarball"
  rm -rf "$dir" "$dir.log"
}

# The packages a .deb depends on, one per line (first alternative, no versions).
bed_deb_depends() {
  local fields
  fields="$(dpkg-deb -f "$1" Depends Pre-Depends)" || return 1
  echo "$fields" | tr ',' '\n' | sed -e 's/|.*//' -e 's/([^)]*)//g' \
    -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' | sed -e '/^$/d' -e 's/^Depends: *//' \
    -e 's/^Pre-Depends: *//' | sort -u
}

# The minbase plus the .deb's dependencies and any extra packages, as a cached tarball keyed by
# that list, so a run only installs the fresh .deb. Prints its path.
bed_layer_tarball() {
  local deb="$1"
  shift
  local base depends packages key tarball
  depends="$(bed_deb_depends "$deb")" || bed_fail "cannot read the Depends of $deb"
  [ -n "$depends" ] || bed_fail "$deb depends on nothing: not the project's package?"
  base="$(bed_base_tarball)" || exit 1
  packages="$( (echo "$depends"; printf '%s\n' "$@") | sed '/^$/d' | sort -u | tr '\n' ' ')"
  key="$(printf '%s\n%s\n' "$(stat -c %s-%Y "$base")" "$packages" | sha256sum | cut -c1-16)"
  tarball="$BED_CACHE/layer-$key.tar.zst"
  [ -s "$tarball" ] || bed_with_cache_lock bed_make_layer "$base" "$tarball" $packages || exit 1
  echo "$tarball"
}

bed_make_layer() {
  local base="$1" tarball="$2"
  shift 2
  [ -s "$tarball" ] && return 0
  local dir
  dir="$(mktemp -d "$BED_CACHE/.layer.XXXXXX")"
  bed_log "installing into the cached layer: $*"
  zstd -dc "$base" | tar -C "$dir" --numeric-owner -xf -
  # The root directory as on a real machine (mktemp and the minbase's tarball leave it 0700):
  # packages' scripts run commands as system users (munge's postinst runs `su munge`).
  chmod 0755 "$dir"
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  # Packages' scripts must not start services in the layer.
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 0755 "$dir/usr/sbin/policy-rc.d"
  if ! unshare --mount --propagation private sh -ec '
      mount -t proc proc "$1/proc"
      chroot "$1" apt-get update -qq
      shift
      DEBIAN_FRONTEND=noninteractive chroot "$0" apt-get install -y -qq --no-install-recommends "$@"
      chroot "$0" apt-get clean' "$dir" "$dir" "$@" >"$dir.log" 2>&1; then
    tail -n 20 "$dir.log" >&2
    rm -rf "$dir" "$dir.log"
    bed_fail "installing $* into the layer failed"
  fi
  rm -rf "$dir"/var/lib/apt/lists/*
  tar -C "$dir" --numeric-owner -cf - . | zstd -T0 -3 -q -o "$tarball.part"
  mv "$tarball.part" "$tarball"
  rm -rf "$dir" "$dir.log"
}

# A process is its pid and its start time (field 22 of /proc/PID/stat): pid_max here is 32768,
# so under load a pid can be given to a new process within seconds.
bed_process_identity() {
  sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk -v pid="$1" '{print pid ":" $20}'
}
# bed_process_alive PID:START: that process still runs (a zombie has finished: only its parent's
# wait is left, which for a host's processes is the machine's init).
bed_process_alive() {
  local pid="${1%%:*}" state
  state="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
  [ -n "$state" ] && [ "$state" != Z ] && [ "$(bed_process_identity "$pid")" = "$1" ]
}

# Removes everything a bed made: processes in its namespaces, the namespaces (and so their veths
# and mounts), the bridge, the run's folders. Safe when nothing is there.
bed_clean() {
  local ns pid process deadline killed=""
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$BED_NS_PREFIX" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      process="$(bed_process_identity "$pid")" || continue  # it has ended already
      killed="$killed $process"
      kill -KILL "$pid" 2>/dev/null || true
    done
  done
  # A dying process leaves its namespace's listing before it has finished exiting (a host's
  # init waits there for the rest of its pid namespace): wait for the processes themselves.
  deadline=$((SECONDS + 10))
  for process in $killed; do
    while bed_process_alive "$process" && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
  done
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$BED_NS_PREFIX" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  ip link del "$BED_BRIDGE" 2>/dev/null || true
  local link
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
    grep "^$BED_VETH_PREFIX" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  nft delete table inet clupybed 2>/dev/null || true
  # The run's files live on a tmpfs (bed_up): unmounting it frees them at once, where removing
  # the unpacked root filesystem from disk took 20-30 s on this machine's loaded disk.
  if mountpoint -q "$BED_STATE" 2>/dev/null; then
    umount "$BED_STATE" 2>/dev/null || umount -l "$BED_STATE" 2>/dev/null || true
  fi
  rm -rf "$BED_STATE"
  return 0
}

bed_down() {
  local status=$?
  set +e
  # A second signal (the one that ended the run, sent again to its group) must not cut the
  # cleaning short: it would leave hosts running until the next run's start.
  trap '' INT TERM
  if [ -n "$BED_ON_EXIT" ]; then eval "$BED_ON_EXIT"; fi
  if [ -n "$BED_LOGS_OUT" ] && [ -d "$BED_SHARED/logs" ]; then
    mkdir -p "$BED_LOGS_OUT" && cp -r "$BED_SHARED/logs/." "$BED_LOGS_OUT/"
  fi
  bed_clean
  return $status
}

# Takes the machine's bed lock, cleans a killed run's remains, unpacks the root filesystem with
# the .deb installed (plus extra packages in the cached layer), and makes the bridge.
bed_up() {
  local deb="$1"
  shift
  bed_check_tools
  [ -s "$deb" ] || bed_fail "no package at $deb (cpack -G DEB in the build tree makes it)"
  # Held by this shell only: what the bed starts closes it ({BED_LOCK_FD}>&-), so remains of a
  # killed run never keep the next run waiting.
  exec {BED_LOCK_FD}>"$BED_LOCK_FILE"
  flock -w 900 "$BED_LOCK_FD" || bed_fail "another test bed held $BED_LOCK_FILE for 15 minutes"
  bed_clean
  trap bed_down EXIT
  trap 'exit 130' INT TERM
  local layer
  layer="$(bed_layer_tarball "$deb" "$@")" || exit 1
  mkdir -p "$BED_STATE"
  mount -t tmpfs -o mode=0755 clupy-testbed "$BED_STATE" || bed_fail "cannot mount a tmpfs on $BED_STATE"
  mkdir -p "$BED_STATE/lower" "$BED_STATE/hosts" "$BED_SHARED/logs"
  chmod 0777 "$BED_SHARED" "$BED_SHARED/logs"
  zstd -dc "$layer" | tar -C "$BED_STATE/lower" --numeric-owner -xf -
  cp "$deb" "$BED_STATE/lower/tmp/clupy.deb"
  chroot "$BED_STATE/lower" dpkg -i /tmp/clupy.deb >"$BED_STATE/dpkg.log" 2>&1 ||
    { cat "$BED_STATE/dpkg.log" >&2; bed_fail "dpkg -i of $deb in the root filesystem failed"; }
  rm -f "$BED_STATE/lower/tmp/clupy.deb"
  ip link add "$BED_BRIDGE" type bridge || bed_fail "cannot make the bridge $BED_BRIDGE"
  ip addr add "$BED_SUBNET.1/24" dev "$BED_BRIDGE"
  ip link set "$BED_BRIDGE" up
}

bed_ns() { echo "$BED_NS_PREFIX$1"; }
bed_addr() {  # a host's address; "main" is the root namespace
  if [ "$1" = main ]; then echo "$BED_SUBNET.1"; else cat "$BED_STATE/hosts/$1/address"; fi
}
bed_init_pid() { cat "$BED_STATE/hosts/$1/init.pid"; }
# A host's root filesystem seen from the main host (its overlay is mounted in its own mount
# namespace only): read and write its files there.
bed_root() { echo "/proc/$(bed_init_pid "$1")/root"; }

# bed_host NAME N: a host at BED_SUBNET.N with its own overlay, /proc, /dev/shm and /shared.
bed_host() {
  local name="$1" n="$2"
  local ns dir veth
  ns="$(bed_ns "$name")"
  dir="$BED_STATE/hosts/$name"
  veth="$BED_VETH_PREFIX$n"
  mkdir -p "$dir/upper" "$dir/work" "$dir/merged"
  echo "$BED_SUBNET.$n" >"$dir/address"
  ip netns add "$ns" || bed_fail "cannot make the network namespace $ns"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  ip link set "$veth" master "$BED_BRIDGE" up
  ip -n "$ns" addr add "$BED_SUBNET.$n/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  # Silent drops, per peer address (partitions) and at random (loss), from inside the host.
  nsenter --net="/run/netns/$ns" nft -f - <<EOF || bed_fail "cannot set nftables rules in $ns"
table inet clupybed {
  set cut { type ipv4_addr; }
  chain input { type filter hook input priority 0; ip saddr @cut drop; }
  chain output { type filter hook output priority 0; ip daddr @cut drop; }
  chain loss { type filter hook output priority 1; }
}
EOF
  nsenter --net="/run/netns/$ns" unshare --mount --uts --ipc --pid --fork --kill-child \
    --propagation private sh -ec '
      dir="$1" shared="$2" name="$3"
      mount -t overlay overlay \
        -o "lowerdir='"$BED_STATE"'/lower,upperdir=$dir/upper,workdir=$dir/work" "$dir/merged"
      mount -t proc proc "$dir/merged/proc"
      mount -t tmpfs -o mode=1777 shm "$dir/merged/dev/shm"
      mkdir -p "$dir/merged/shared"
      mount --bind "$shared" "$dir/merged/shared"
      hostname "$name"
      echo "$name" >"$dir/merged/etc/hostname"
      exec chroot "$dir/merged" /bin/sleep infinity' \
    sh "$dir" "$BED_SHARED" "$name" </dev/null >"$dir/init.log" 2>&1 {BED_LOCK_FD}>&- &
  local unshare_pid=$! init="" deadline=$((SECONDS + 20))
  disown "$unshare_pid"  # its end is the bed's business, not the shell's job table's
  while [ $SECONDS -lt $deadline ]; do
    init="$(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null | awk '{print $1}')"
    if [ -n "$init" ] && [ -e "/proc/$init/root/usr/bin/clupy" ] &&
      [ "$(cat "/proc/$init/comm" 2>/dev/null)" = sleep ]; then
      echo "$init" >"$dir/init.pid"
      return 0
    fi
    kill -0 "$unshare_pid" 2>/dev/null || break
    sleep 0.02
  done
  cat "$dir/init.log" >&2
  bed_fail "host $name did not start"
}

# bed_exec NAME CMD...: runs CMD inside the host (its namespaces and root) and waits for it.
bed_exec() {
  local name="$1"
  shift
  nsenter --target "$(bed_init_pid "$name")" --net --mount --uts --ipc --pid --root --wd -- "$@"
}

# bed_spawn NAME LOG CMD...: starts CMD in the host in the background, its output in
# $BED_SHARED/logs/LOG.log (/shared/logs/LOG.log inside); sets BED_PID to its nsenter's pid.
bed_spawn() {
  local name="$1" log="$2"
  shift 2
  bed_exec "$name" "$@" </dev/null >"$BED_SHARED/logs/$log.log" 2>&1 {BED_LOCK_FD}>&- &
  BED_PID=$!
  disown "$BED_PID"
}

# bed_signal NAME SIG: sends SIG (KILL, STOP, CONT, TERM) to every process of the host but its
# init (so the host stays up and a daemon can be started again).
bed_signal() {
  local name="$1" sig="$2" pid init
  init="$(bed_init_pid "$name")"
  for pid in $(ip netns pids "$(bed_ns "$name")"); do
    [ "$pid" = "$init" ] && continue
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = /usr/bin/unshare ] && continue
    kill "-$sig" "$pid" 2>/dev/null || true
  done
  return 0
}

bed_nft() {  # bed_nft NAME nft-args...: nft in the host's network namespace
  local name="$1"
  shift
  nsenter --net="/run/netns/$(bed_ns "$name")" nft "$@"
}

# bed_partition A B: every packet between hosts A and B is dropped silently (B may be "main").
bed_partition() {
  bed_nft "$1" add element inet clupybed cut "{ $(bed_addr "$2") }"
  if [ "$2" != main ]; then bed_nft "$2" add element inet clupybed cut "{ $(bed_addr "$1") }"; fi
}
bed_heal() {
  bed_nft "$1" delete element inet clupybed cut "{ $(bed_addr "$2") }"
  if [ "$2" != main ]; then bed_nft "$2" delete element inet clupybed cut "{ $(bed_addr "$1") }"; fi
}
# bed_loss NAME PER_10000: packets leaving the host are dropped at random at that rate (0: none).
bed_loss() {
  bed_nft "$1" flush chain inet clupybed loss
  if [ "$2" -gt 0 ]; then
    bed_nft "$1" add rule inet clupybed loss numgen random mod 10000 "<" "$2" counter drop
  fi
}

# bed_wait_for DESCRIPTION SECONDS CMD...: polls CMD until it succeeds or fails the run.
bed_wait_for() {
  local what="$1" limit="$2"
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || bed_fail "timed out after ${limit}s waiting for $what"
    sleep 0.1
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    prepare)
      bed_check_tools
      if [ -n "${2:-}" ]; then bed_layer_tarball "$2" "${@:3}"; else bed_base_tarball; fi
      ;;
    clean)
      exec {BED_LOCK_FD}>"$BED_LOCK_FILE"
      flock -w 900 "$BED_LOCK_FD"
      bed_clean
      ;;
    *)
      echo "usage: $0 prepare [DEB [PACKAGE...]] | clean" >&2
      exit 2
      ;;
  esac
fi
