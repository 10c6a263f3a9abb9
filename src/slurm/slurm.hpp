// CluPy inside a Slurm allocation (docs/slurm.md).
//
// `srun clupy --slurm` runs one launcher per task: the task of SLURM_PROCID 0 also starts a master
// (a child `clupy --master` on a port the OS picks, bound to the node's address) and publishes
// its URL and a fresh token in the job folder on the shared filesystem; every task runs a server
// in its own process, named after its node, with the CPUs Slurm gave it. With --slurm-run the
// first task then runs PROGRAM against that cluster and, when it exits, stops every daemon and
// exits with its status. Servers drain before the job's time limit and on SIGTERM.
// `clupy --slurm-submit N` submits N batch jobs of servers that join an existing cluster.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace clupy::slurm {

struct Options {
  // Parent of the job folders; empty: $CLUPY_SLURM_DIR, else $SLURM_SUBMIT_DIR/.clupy. The
  // cluster of job J is published in <dir>/J (cluster.env, token).
  std::string dir;
  // Join the cluster published in this job folder (servers only): what --slurm-submit's jobs do.
  std::string join;
  // Or join a master given directly (with its token file).
  std::string master_url;
  std::string token_file;
  std::string interface;             // the master's address: this interface's IPv4 address...
  std::string address;               // ...or this address; default: the node's NodeAddr
  std::vector<std::string> program;  // --slurm-run PROGRAM ARGS...
  std::optional<int> capacity;       // default: the CPUs Slurm gave the task
  std::string server_config;         // a clupy.server.yaml
  std::string log_level;
  std::chrono::milliseconds drain_before{std::chrono::minutes(2)};
  // How long tasks of other nodes wait for the first one to publish the master.
  std::chrono::milliseconds wait{std::chrono::seconds(60)};
  // How often the job's end time is read again (`scontrol update` may move it).
  std::chrono::milliseconds end_time_poll{std::chrono::seconds(15)};
};

// `srun clupy --slurm [--slurm-run PROGRAM ARGS...]`. Returns the exit status.
int run(const Options& options);

// `clupy --slurm-submit N [sbatch options]`: N jobs of servers for the cluster in the job folder
// (options.join, else this job's folder) or at options.master_url. Prints the job ids.
int submit(int count, const std::vector<std::string>& sbatch_options, const Options& options);

// `clupy --slurm-submit N [options] [sbatch options]` from its words after --slurm-submit: the
// options of Options (--slurm-dir, --slurm-join, --master-url, --token-file,
// --slurm-drain-before, --capacity, --log-level) are taken, every other word goes to sbatch.
int submit_command(const std::vector<std::string>& words);

// The folder where job `job_id`'s cluster is published (see Options::dir).
std::string job_folder(const Options& options, const std::string& job_id,
                       const std::string& submit_dir);

}  // namespace clupy::slurm
