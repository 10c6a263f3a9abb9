#include "slurm_cluster.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace clupy::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kRunVariable = "CLUPY_SLURM_TEST_RUN";
const std::string kParent = "/tmp/clupy-slurm-tests";

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Live processes (other than this one) whose environment holds `entry` ("NAME=value").
std::vector<int> processes_with_env(const std::string& entry) {
  std::vector<int> pids;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == ::getpid()) continue;
    const std::string env = read_all("/proc/" + std::string(e->d_name) + "/environ");
    std::size_t at = 0;
    while (at < env.size()) {
      const std::size_t next = env.find('\0', at);
      const std::string item = env.substr(at, next == std::string::npos ? next : next - at);
      if (item == entry) {
        pids.push_back(static_cast<int>(pid));
        break;
      }
      if (next == std::string::npos) break;
      at = next + 1;
    }
  }
  ::closedir(proc);
  return pids;
}

// Every process of a run: those it started carry kRunVariable, slurmstepd (which Slurm starts
// with an environment of its own) carries the run's SLURM_CONF.
std::vector<int> run_processes(const std::string& dir) {
  auto pids = processes_with_env(std::string(kRunVariable) + "=" + dir);
  for (int pid : processes_with_env("SLURM_CONF=" + dir + "/slurm.conf")) pids.push_back(pid);
  return pids;
}

std::string hostname() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

}  // namespace

int clean_leftover_runs(const std::string& parent) {
  int stopped = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("run-", 0) != 0) continue;
    const int owner = std::atoi(name.c_str() + 4);
    // A run whose test process still lives is another test's, running now: leave it alone.
    const std::string cmdline = read_all("/proc/" + std::to_string(owner) + "/cmdline");
    if (owner > 0 && cmdline.find("slurm_test") != std::string::npos) continue;
    for (int pid : run_processes(entry.path().string())) {
      ::kill(pid, SIGKILL);
      ++stopped;
    }
    fs::remove_all(entry.path(), ec);
  }
  return stopped;
}

SlurmCluster::SlurmCluster() {
  fs::create_directories(kParent);
  ::chmod(kParent.c_str(), 0755);
  if (int stopped = clean_leftover_runs(kParent); stopped > 0)
    std::fprintf(stderr, "slurm test: stopped %d process(es) left by an earlier run\n", stopped);
  dir_ = kParent + "/run-" + std::to_string(::getpid());
  fs::remove_all(dir_);
  for (const char* sub : {"/munge", "/state", "/spool/n1", "/spool/n2", "/spool/n3", "/work"})
    fs::create_directories(dir_ + sub);
  ::chmod(dir_.c_str(), 0755);
  ::chmod((dir_ + "/munge").c_str(), 0755);
  ::setenv(kRunVariable, dir_.c_str(), 1);
  // sbatch runs from here: SLURM_SUBMIT_DIR, and so the jobs' .clupy folders, are in the run's
  // scratch folder (job ids start at 1 again in every run).
  char cwd[4096] = {};
  previous_dir_ = ::getcwd(cwd, sizeof cwd) ? cwd : "/";
  if (::chdir((dir_ + "/work").c_str()) != 0) throw std::runtime_error("cannot enter " + dir_);

  // munged of our own: a fresh key and a socket in the scratch folder.
  {
    std::ifstream random("/dev/urandom", std::ios::binary);
    std::string key(1024, '\0');
    random.read(key.data(), static_cast<std::streamsize>(key.size()));
    const int fd = ::open((dir_ + "/munge/munge.key").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ::write(fd, key.data(), key.size()) != static_cast<ssize_t>(key.size()))
      throw std::runtime_error("cannot write the munge key");
    ::close(fd);
  }
  const std::string socket = dir_ + "/munge/munge.sock";
  daemons_.emplace_back(ChildProcess::Options{
      {"/usr/sbin/munged", "--foreground", "--force", "--socket=" + socket,
       "--key-file=" + dir_ + "/munge/munge.key", "--pid-file=" + dir_ + "/munge/munged.pid",
       "--seed-file=" + dir_ + "/munge/munged.seed", "--log-file=" + dir_ + "/munge/munged.log"},
      {},
      "",
      dir_ + "/munged.out"});
  if (!wait_until([&] { return fs::exists(socket); }, 10s, "munged's socket"))
    throw std::runtime_error("munged did not start: " + read_all(dir_ + "/munged.out"));

  const std::string host = hostname();
  std::ostringstream conf;
  conf << "ClusterName=clupytest\n"
       << "SlurmctldHost=" << host << "(127.0.0.1)\n"
       << "SlurmctldPort=" << free_loopback_port() << "\n"
       << "SlurmUser=root\nSlurmdUser=root\n"
       << "AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket=" << socket << "\n"
       << "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
       << "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n"
       << "JobCompType=jobcomp/none\nMpiDefault=none\nSwitchType=switch/none\n"
       << "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n"
       << "ReturnToService=2\nKillWait=10\nMinJobAge=300\n"
       << "SchedulerParameters=sched_min_interval=100000\n"
       << "StateSaveLocation=" << dir_ << "/state\n"
       << "SlurmdSpoolDir=" << dir_ << "/spool/%n\n"
       << "SlurmctldPidFile=" << dir_ << "/slurmctld.pid\n"
       << "SlurmdPidFile=" << dir_ << "/slurmd-%n.pid\n"
       << "SlurmctldLogFile=" << dir_ << "/slurmctld.log\n"
       << "SlurmdLogFile=" << dir_ << "/slurmd-%n.log\n";
  for (int n = 1; n <= 3; ++n)
    conf << "NodeName=n" << n << " NodeHostname=" << host
         << " NodeAddr=127.0.0.1 Port=" << free_loopback_port() << " CPUs=2 RealMemory=1000\n";
  conf << "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n";
  write_file(dir_ + "/slurm.conf", conf.str());
  ::setenv("SLURM_CONF", (dir_ + "/slurm.conf").c_str(), 1);

  daemons_.emplace_back(ChildProcess::Options{
      {"/usr/sbin/slurmctld", "-D", "-i", "-f", dir_ + "/slurm.conf"}, {}, "", dir_ + "/ctld.out"});
  for (int n = 1; n <= 3; ++n)
    daemons_.emplace_back(ChildProcess::Options{
        {"/usr/sbin/slurmd", "-D", "-f", dir_ + "/slurm.conf", "-N", "n" + std::to_string(n)},
        {},
        "",
        dir_ + "/slurmd-n" + std::to_string(n) + ".out"});
  std::string shown;
  if (!wait_until(
          [&] {
            shown = run_command({"sinfo", "-h", "-N", "-o", "%N %t"}).output;
            std::size_t idle = 0, at = 0;
            while ((at = shown.find(" idle\n", at)) != std::string::npos) ++idle, ++at;
            return idle == 3;
          },
          30s, "three idle nodes"))
    throw std::runtime_error("the Slurm nodes did not become idle: sinfo says\n" + shown + logs());
}

SlurmCluster::~SlurmCluster() { stop_everything(); }

void SlurmCluster::stop_everything() {
  // Jobs a failed test left running end first, so that no slurmstepd waits for a gone slurmd.
  std::istringstream jobs(run_command({"squeue", "-h", "-o", "%i"}).output);
  for (std::string job; jobs >> job;) run_command({"scancel", "--full", job});
  wait_until([&] { return run_command({"squeue", "-h"}).output.empty(); }, 15s, "jobs to end");
  run_command({"scontrol", "shutdown"});
  for (auto& daemon : daemons_)
    if (daemon.running() && !daemon.wait(10s)) daemon.kill();
  // Job steps still there (a failed test) and their slurmstepd.
  for (int pid : run_processes(dir_)) ::kill(pid, SIGKILL);
  daemons_.clear();
  ::unsetenv(kRunVariable);
  if (::chdir(previous_dir_.c_str()) != 0) std::perror("chdir");
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string SlurmCluster::sbatch(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"sbatch", "--parsable"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto result = run_command(argv);
  if (result.status != 0) throw std::runtime_error("sbatch failed: " + result.output);
  std::string id = result.output.substr(0, result.output.find_first_of(";\n"));
  return id;
}

std::string SlurmCluster::job_state(const std::string& job_id) {
  auto result = run_command({"squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"});
  std::string state = result.output;
  while (!state.empty() && std::isspace(static_cast<unsigned char>(state.back()))) state.pop_back();
  return result.status == 0 ? state : "";
}

std::string SlurmCluster::wait_job_end(const std::string& job_id, std::chrono::seconds timeout) {
  std::string state;
  wait_until(
      [&] {
        state = job_state(job_id);
        return !state.empty() && state != "PENDING" && state != "RUNNING" &&
               state != "CONFIGURING" && state != "COMPLETING";
      },
      timeout, "job " + job_id + " to end");
  return state;
}

std::vector<int> SlurmCluster::job_processes(const std::string& job_id) {
  return processes_with_env("SLURM_JOB_ID=" + job_id);
}

std::string SlurmCluster::logs() const {
  std::string text;
  for (const char* name : {"/slurmctld.log", "/slurmd-n1.log", "/slurmd-n2.log", "/slurmd-n3.log",
                           "/ctld.out", "/munged.out"}) {
    std::string log = read_all(dir_ + name);
    if (log.size() > 4000) log = log.substr(log.size() - 4000);
    text += std::string("\n--- ") + name + "\n" + log;
  }
  return text;
}

}  // namespace clupy::test
