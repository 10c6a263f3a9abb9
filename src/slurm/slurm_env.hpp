// What a process learns from Slurm: its place in the job step (environment variables), the
// node's address on the network Slurm uses, the job's end time and KillWait (scontrol/squeue),
// and the job folder where the cluster is published. No daemon state here.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace clupy::slurm {

// The step this process belongs to, from SLURM_* variables.
struct StepInfo {
  std::string job_id;     // SLURM_JOB_ID
  std::string step_id;    // SLURM_STEP_ID ("batch" in a batch script without srun)
  int proc_id = 0;        // SLURM_PROCID
  int local_id = 0;       // SLURM_LOCALID
  int tasks_on_node = 1;  // from SLURM_TASKS_PER_NODE for this node, else 1
  std::string node_name;  // SLURMD_NODENAME, else the host name
  std::string submit_dir;
  std::optional<long long> end_time;  // SLURM_JOB_END_TIME (Unix seconds), when Slurm sets it
  std::string srun;  // SLURM_SRUN_COMM_HOST:PORT, the srun that started the step, when set
  // What tells this step's files from those of another step with the same ids in the same
  // folder (an earlier step of the job; a job of another Slurm that reused the id): job.step
  // and the srun's address.
  std::string step_key() const { return job_id + "." + step_id + (srun.empty() ? "" : "@" + srun); }
};

// Throws clupy::ConfigError outside a Slurm job (SLURM_JOB_ID unset).
StepInfo current_step();

// Worker slots Slurm gave this process: SLURM_CPUS_PER_TASK when the step asked for CPUs per
// task, else SLURM_CPUS_ON_NODE divided among the step's tasks on this node, else the cores.
int slurm_capacity();

struct CommandResult {
  int status = -1;     // exit code; -1 when it could not run or was killed
  std::string output;  // stdout and stderr
};
// Runs argv[0] (found in PATH) and collects its output. Blocks.
CommandResult run_command(const std::vector<std::string>& argv);

// The IPv4 address of a network interface (`ip addr` names); throws ConfigError naming it.
std::string interface_address(const std::string& interface);
// The node's address as Slurm knows it: NodeAddr from `scontrol show node`, resolved to an
// IPv4 address; falls back to resolving the node name. Throws ConfigError when neither works.
std::string node_address(const std::string& node_name);

// Seconds until the job's time limit as squeue reports it now (`%L`), nullopt when unlimited
// or unknown. `scontrol update` of the limit shows here, unlike in SLURM_JOB_END_TIME.
std::optional<long long> seconds_left(const std::string& job_id);
// Parses squeue's time left ("[days-]hours:minutes:seconds", "minutes:seconds", "UNLIMITED").
std::optional<long long> parse_time_left(const std::string& text);
// KillWait from `scontrol show config`: how long Slurm waits between SIGTERM and SIGKILL.
std::chrono::seconds kill_wait();

// A PROGRAM argument as a path that can be executed (PATH searched for bare names); throws
// ConfigError saying what is wrong ("not found in PATH", "not executable").
std::string resolve_program(const std::string& program);

}  // namespace clupy::slurm
