// A real Slurm on this machine for the tests: its own munged (own key and socket), slurmctld and
// three slurmd (n1..n3, 2 CPUs each) on free ports, all in a scratch folder of their own.
// Every process it starts, and every process of the jobs run there, carries
// CLUPY_SLURM_TEST_RUN=<scratch> in its environment: that is how the leftovers of a killed run
// are found (by PID) and stopped at the next start, and how a test proves a job's processes are
// gone. Nothing outside the scratch folder is touched.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "slurm/slurm_env.hpp"
#include "support/process.hpp"

namespace clupy::test {

// The launcher's own runner of Slurm's commands (exit status and output).
using slurm::run_command;

class SlurmCluster {
 public:
  // Starts everything and waits for the three nodes to be idle; throws std::runtime_error
  // saying what failed.
  SlurmCluster();
  ~SlurmCluster();  // scontrol shutdown, then every process of the run is stopped

  const std::string& dir() const { return dir_; }
  // sbatch --parsable ARGS...; returns the job id (throws when sbatch fails).
  std::string sbatch(const std::vector<std::string>& args);
  // The job's state (RUNNING, COMPLETED, CANCELLED, TIMEOUT, ...); empty when unknown.
  std::string job_state(const std::string& job_id);
  // Waits until the job left the running states; returns its final state.
  std::string wait_job_end(const std::string& job_id, std::chrono::seconds timeout);
  // PIDs of live processes whose environment has SLURM_JOB_ID=job_id.
  std::vector<int> job_processes(const std::string& job_id);
  std::string logs() const;  // the daemons' logs, for failure messages

 private:
  void stop_everything();

  std::string dir_;
  std::string previous_dir_;
  std::vector<ChildProcess> daemons_;
};

// Stops the processes of earlier runs that are still there (their scratch folders' owners are
// gone) and removes those folders. Returns how many processes it stopped.
int clean_leftover_runs(const std::string& parent);

}  // namespace clupy::test
