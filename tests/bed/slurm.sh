#!/usr/bin/env bash
# Issue 17 on the test bed: Slurm across separate hosts. A controller host (slurmctld) and three
# compute hosts, each with its own munged and one slurmd whose NodeAddr is the host's own bed
# address; the compute hosts have the .deb and Slurm from the bed's layer, nothing of the build
# tree. The job folder is /shared/job (every host's shared folder), where sbatch runs.
#   - `sbatch -N 3` of `srun clupy --slurm-run PROGRAM`: the values are right, tasks ran on all
#     three hosts (the workers' own host names), the master published the first node's bed
#     address (not 127.0.0.1), and when the job ends no process of it is left on any host;
#   - measured (printed, not asserted): sbatch -> first task result, and scancel of an idle
#     three-host cluster job -> every clupy process gone, medians with min-max over
#     BED_SLURM_RUNS runs (3).
# Every Slurm daemon runs inside a host's namespaces, so the bed's clean-up (every process of
# every clupybed-* namespace) removes them, also after a killed run.
BED_EXTRA_PACKAGES="slurmctld slurmd slurm-client munge"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ -n "${BED_SLURM_PROGRAM:-}" ] || scenario_fail "BED_SLURM_PROGRAM is not set (run through ctest)"
runs="${BED_SLURM_RUNS:-3}"
phase() { echo "[$SECONDS s] $*"; }
phase "bed up"

controller=ctl
nodes="s1 s2 s3"
declare -A number=([ctl]=5 [s1]=11 [s2]=12 [s3]=13)
job_dir="$BED_SHARED/job"  # /shared/job inside the hosts
mkdir -p "$job_dir" "$BED_SHARED/slurm"
cp "$BED_SLURM_PROGRAM" "$BED_CLIENT" "$BED_PRIMES" "$job_dir/"

for host in $controller $nodes; do bed_host "$host" "${number[$host]}"; done

# One slurm.conf and one munge key for the whole cluster, in each host's /etc as on real
# machines; state, spool and pid files on each host's own filesystem, logs in /shared/logs.
{
  echo "ClusterName=clupybed"
  echo "SlurmctldHost=$controller($(bed_addr $controller))"
  echo "SlurmUser=root"
  echo "SlurmdUser=root"
  echo "AuthType=auth/munge"
  echo "CredType=cred/munge"
  echo "ProctrackType=proctrack/linuxproc"
  echo "TaskPlugin=task/none"
  echo "JobAcctGatherType=jobacct_gather/none"
  echo "AccountingStorageType=accounting_storage/none"
  echo "JobCompType=jobcomp/none"
  echo "MpiDefault=none"
  echo "SwitchType=switch/none"
  echo "SelectType=select/cons_tres"
  echo "SelectTypeParameters=CR_Core"
  echo "ReturnToService=2"
  echo "KillWait=10"
  echo "MinJobAge=300"
  echo "SchedulerParameters=sched_min_interval=100000"
  echo "StateSaveLocation=/var/lib/clupybed-slurm/state"
  echo "SlurmdSpoolDir=/var/lib/clupybed-slurm/spool"
  echo "SlurmctldPidFile=/run/slurmctld.pid"
  echo "SlurmdPidFile=/run/slurmd.pid"
  echo "SlurmctldLogFile=/shared/logs/slurmctld.log"
  echo "SlurmdLogFile=/shared/logs/slurmd-%n.log"
  for node in $nodes; do
    echo "NodeName=$node NodeHostname=$node NodeAddr=$(bed_addr "$node") CPUs=2 RealMemory=1000"
  done
  echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
} >"$BED_SHARED/slurm/slurm.conf"
head -c 1024 /dev/urandom >"$BED_SHARED/slurm/munge.key"
# The hosts know each other by name, as a cluster's machines do (Slurm resolves node and
# controller names; without them every client command waits for a DNS server it cannot reach).
for host in $controller $nodes; do echo "$(bed_addr "$host") $host"; done >"$BED_SHARED/slurm/hosts"
for host in $controller $nodes; do
  root="$(bed_root "$host")"
  cat "$BED_SHARED/slurm/hosts" >>"$root/etc/hosts"
  mkdir -p "$root/etc/slurm" "$root/etc/munge"
  cp "$BED_SHARED/slurm/slurm.conf" "$root/etc/slurm/slurm.conf"
  install -m 0400 "$BED_SHARED/slurm/munge.key" "$root/etc/munge/munge.key"
  bed_exec "$host" sh -c 'chown munge:munge /etc/munge/munge.key &&
    mkdir -p /run/munge /var/lib/munge /var/log/munge /var/lib/clupybed-slurm/state \
      /var/lib/clupybed-slurm/spool && chown munge:munge /run/munge /var/lib/munge /var/log/munge'
  bed_spawn "$host" "munged-$host" runuser -u munge -- /usr/sbin/munged --foreground
done
# slurmd reads the topology from /sys and starts its cgroup plugin (v1 on this machine) even with
# proctrack/linuxproc: the compute hosts get a /sys of their own network namespace and the
# machine's cgroup hierarchy (in their mount namespaces only; they vanish with them).
for node in $nodes; do
  nsenter --target "$(bed_init_pid "$node")" --mount --net -- sh -ec '
    mount -t sysfs sysfs "$1/sys"
    mount --rbind /sys/fs/cgroup "$1/sys/fs/cgroup"' sh "$BED_STATE/hosts/$node/merged" ||
    scenario_fail "cannot mount /sys and the cgroup hierarchy in host $node"
done
for host in $controller $nodes; do
  bed_wait_for "munged on $host" 15 test -S "$(bed_root "$host")/run/munge/munge.socket.2"
done
bed_spawn $controller slurmctld /usr/sbin/slurmctld -D -i
for node in $nodes; do bed_spawn "$node" "slurmd-$node" /usr/sbin/slurmd -D; done
idle_nodes() { bed_exec $controller sinfo -h -N -o '%N %t' 2>/dev/null | grep -c ' idle$'; }
three_idle() { [ "$(idle_nodes)" -eq 3 ]; }
bed_wait_for "three idle Slurm nodes (slurmd on s1, s2, s3)" 30 three_idle
phase "Slurm up"
echo "Slurm: slurmctld on $controller ($(bed_addr $controller)), slurmd on $nodes:"
bed_exec $controller scontrol -o show nodes | grep -o 'NodeName=[^ ]* .*NodeAddr=[^ ]*' |
  awk '{print "  " $1 " " $NF}'

# sbatch from the controller host in /shared/job: SLURM_SUBMIT_DIR, and so the job folders
# (.clupy/<job id>), are on the filesystem every host shares.
sbatch_in_job_dir() {
  bed_exec $controller sh -c 'cd /shared/job && sbatch --parsable "$@"' sh \
    --output=/shared/logs/job-%j.out "$@" | cut -d';' -f1
}
job_state() { bed_exec $controller squeue -h -t all -j "$1" -o %T 2>/dev/null | tr -d '[:space:]'; }
job_ended() {
  local state
  state="$(job_state "$1")"
  case "$state" in "" | PENDING | RUNNING | CONFIGURING | COMPLETING) return 1 ;; *) return 0 ;; esac
}
now_ms() { date +%s%3N; }

# What runs on a compute host besides the bed's init and its Slurm daemons: a job's remains.
# Builtins only in the loop: a fork per process made one scan take seconds on loaded cores.
job_processes() {
  local node init pid comm
  for node in $nodes; do
    read -r init <"$BED_STATE/hosts/$node/init.pid"
    for pid in $(ip netns pids "$(bed_ns "$node")" 2>/dev/null); do
      [ "$pid" = "$init" ] && continue
      read -r comm <"/proc/$pid/comm" 2>/dev/null || continue
      case "$comm" in unshare | nsenter | runuser | munged | slurmd) ;; *) echo "$node:$pid:$comm" ;; esac
    done
  done
}
no_job_processes() {
  local left
  left="$(job_processes)"
  [ -z "$left" ] || { echo "$left" >"$BED_SHARED/logs/left-processes"; return 1; }
}
# waits for a job's processes to end on every compute host, or fails naming those left
wait_job_processes_gone() {
  local job="$1" deadline=$((SECONDS + 15))
  until no_job_processes; do
    [ $SECONDS -lt $deadline ] ||
      scenario_fail "processes left on the hosts 15 s after job $job ended (host:pid:name):" \
        "$(tr "\n" " " <"$BED_SHARED/logs/left-processes")"
    sleep 0.1
  done
}
clupy_processes() { job_processes | grep -c ':clupy' || true; }
no_clupy_processes() { [ "$(clupy_processes)" -eq 0 ]; }

cat >"$job_dir/run.sh" <<'EOF'
#!/bin/bash
echo "FIRST_NODE $SLURMD_NODENAME $(hostname)"
srun clupy --slurm-run /shared/job/slurm_program spread 30 100
echo "PROGRAM_STATUS $?"
EOF
cat >"$job_dir/full.sh" <<'EOF'
#!/bin/bash
echo "FIRST_NODE $SLURMD_NODENAME $(hostname)"
srun clupy --slurm-run /shared/job/slurm_program spread 30 100
echo "PROGRAM_STATUS $?"
echo PRIMES_BEGIN
srun clupy --slurm-run /shared/job/primes
echo "PRIMES_STATUS $?"
echo SPREAD_BEGIN
srun clupy --slurm-run /shared/job/bed_client spread 600
echo "SPREAD_STATUS $?"
EOF
printf '#!/bin/bash\nsrun clupy --slurm\n' >"$job_dir/cluster.sh"
chmod 0755 "$job_dir"/*.sh

# The whole job: slurm_program (timing, master address, servers), examples/primes, and
# bed_client (each task returns its value and the host name of the worker that ran it).
submitted="$(now_ms)"
job="$(sbatch_in_job_dir -N3 --ntasks-per-node=1 -c1 /shared/job/full.sh)"
[ -n "$job" ] || scenario_fail "sbatch gave no job id"
bed_wait_for "job $job to end" 120 job_ended "$job"
out="$BED_SHARED/logs/job-$job.out"
[ "$(job_state "$job")" = COMPLETED ] ||
  { cat "$out" >&2; scenario_fail "job $job ended $(job_state "$job"), not COMPLETED"; }
cat "$out" | grep -v '^RESULT \|^primes(' || true
program="$(sed -n '1,/^PRIMES_BEGIN/p' "$out")"
grep -q '^PROGRAM_STATUS 0$' <<<"$program" || scenario_fail "slurm_program failed (job $job)"
grep -q '^DONE 30 30$' <<<"$program" || scenario_fail "slurm_program: not 30 of 30 results"
servers="$(awk '$1 == "RESULT" {print $3}' <<<"$program" | sort -u | tr '\n' ' ')"
[ "$servers" = "s1 s2 s3 " ] || scenario_fail "slurm_program's tasks ran on servers '$servers'"
read -r _ first_node first_hostname < <(grep '^FIRST_NODE ' "$out")
[ "$first_node" = "$first_hostname" ] || scenario_fail "node $first_node runs on host $first_hostname"
master="$(awk '$1 == "CLUSTER" {print $2; exit}' <<<"$program")"
[[ "$master" == "clupy://$(bed_addr "$first_node"):"* ]] ||
  scenario_fail "the master published $master, not the first node's ($first_node) address $(bed_addr "$first_node")"
grep -q '^CLUSTER [^ ]* 3$' <<<"$program" || scenario_fail "the program did not start with 3 servers"
echo "master published $master: $first_node's own bed address; slurm_program's tasks on $servers"

grep -q '^PRIMES_STATUS 0$' "$out" || scenario_fail "examples/primes failed (job $job)"
"$BED_CLIENT" primes-sequential >"$BED_SHARED/logs/primes-sequential.log" \
  2>"$BED_SHARED/logs/primes-sequential.stderr.log"
diff <(grep '^primes(' "$out") "$BED_SHARED/logs/primes-sequential.log" >&2 ||
  scenario_fail "examples/primes under Slurm differs from the sequential results"
grep -q "100 of 100 tasks succeeded on clupy://$(bed_addr "$first_node"):" "$out" ||
  scenario_fail "examples/primes did not run on the cluster of the first node"
echo "examples/primes: 100 results equal to sequential"

spread="$(sed -n '/^SPREAD_BEGIN/,$p' "$out")"
grep -q '^SPREAD_STATUS 0$' <<<"$spread" || scenario_fail "bed_client spread failed (job $job)"
grep -q '^OUTCOMES 600 0 0 0 0$' <<<"$spread" || scenario_fail "600 tasks: not all right and once"
hosts="$(awk '$1 == "HOST" {print $2}' <<<"$spread" | sort | tr '\n' ' ')"
[ "$hosts" = "s1 s2 s3 " ] || scenario_fail "bed_client's tasks ran on hosts '$hosts', not s1 s2 s3"
echo "600 tasks right and once, their workers on hosts: $(awk '$1 == "HOST" {printf "%s=%s ", $2, $3}' <<<"$spread")"
wait_job_processes_gone "$job"
[ ! -e "$job_dir/.clupy/$job/token" ] || echo "note: the job folder's token remains"
echo "job $job ended: no process of it left on any compute host"

phase "first job checked"
# Launch time: sbatch -> the program's first task result, over separate hosts.
launch_ms=()
launch_ms+=($(($(awk '$1 == "FIRST_RESULT_MS" {print $2; exit}' "$out") - submitted)))
for ((run = 2; run <= runs; run++)); do
  submitted="$(now_ms)"
  job="$(sbatch_in_job_dir -N3 --ntasks-per-node=1 -c1 /shared/job/run.sh)"
  bed_wait_for "job $job to end" 60 job_ended "$job"
  grep -q '^DONE 30 30$' "$BED_SHARED/logs/job-$job.out" || scenario_fail "job $job: not 30 of 30 results"
  launch_ms+=($(($(awk '$1 == "FIRST_RESULT_MS" {print $2; exit}' "$BED_SHARED/logs/job-$job.out") - submitted)))
  wait_job_processes_gone "$job"
done

# scancel of an idle cluster job (srun clupy --slurm) whose three servers registered -> every
# clupy process gone from the hosts.
registered_servers() {
  local folder="$job_dir/.clupy/$1" url
  url="$(sed -n 's/^CLUPY_MASTER_URL=//p' "$folder/cluster.env" 2>/dev/null)"
  [ -n "$url" ] || { echo 0; return; }
  CLUPY_TOKEN_FILE="$folder/token" "$BED_BUILD_DIR/tools/clupy" info --master-url "$url" --json \
    2>/dev/null | grep -o '"connected": *true' | wc -l
}
three_registered() { [ "$(registered_servers "$1")" -ge 3 ]; }
phase "launch times measured"
scancel_ms=()
for ((run = 1; run <= runs; run++)); do
  job="$(sbatch_in_job_dir -N3 --ntasks-per-node=1 -c1 /shared/job/cluster.sh)"
  bed_wait_for "three servers of cluster job $job registered" 60 three_registered "$job"
  [ "$(clupy_processes)" -ge 3 ] || scenario_fail "cluster job $job: fewer than 3 clupy processes"
  cancelled="$(now_ms)"
  bed_exec $controller scancel "$job"
  bed_wait_for "the clupy processes of job $job to exit after scancel" 30 no_clupy_processes
  scancel_ms+=($(($(now_ms) - cancelled)))
  bed_wait_for "job $job to end" 30 job_ended "$job"
  wait_job_processes_gone "$job"
done

phase "scancel times measured"
summary() {  # summary NAME VALUES...: median (min-max) of the values, in ms
  local name="$1"
  shift
  printf '%s\n' "$@" | sort -n | awk -v name="$name" '{v[NR] = $1}
    END {printf "MEASURE %s median %d ms (%d-%d), %d runs\n", name, v[int((NR + 1) / 2)], v[1], v[NR], NR}'
}
summary sbatch_to_first_result_on_3_hosts "${launch_ms[@]}"
summary scancel_to_servers_gone_on_3_hosts "${scancel_ms[@]}"
echo "scenario ok"
