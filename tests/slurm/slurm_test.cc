// CluPy on a real Slurm (slurmctld, three slurmd, munged: SlurmCluster): whole jobs through
// `srun clupy --slurm-run`, two jobs at once, servers added with --slurm-submit and removed with
// scancel, and a server job draining before its time limit. Lines starting "MEASURE" are the
// figures docs/slurm.md quotes.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "slurm/slurm_env.hpp"
#include "slurm_cluster.hpp"
#include "support/process.hpp"

namespace clupy::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

long long now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string file_or_empty(const std::string& path) {
  return fs::exists(path) ? read_file(path) : std::string();
}

// What slurm_program printed.
struct ProgramOutput {
  std::string master_url;
  std::size_t servers_at_start = 0;
  long long first_result_ms = 0;
  std::map<int, std::vector<std::string>> results;  // task -> servers that reported it
  int failures = 0;
  int done = -1, tasks = -1;
};

ProgramOutput parse_program(const std::string& text) {
  ProgramOutput out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string tag;
    words >> tag;
    if (tag == "CLUSTER") {
      words >> out.master_url >> out.servers_at_start;
    } else if (tag == "FIRST_RESULT_MS") {
      words >> out.first_result_ms;
    } else if (tag == "RESULT") {
      int i = 0;
      std::string server;
      words >> i >> server;
      out.results[i].push_back(server);
    } else if (tag == "FAILURE") {
      ++out.failures;
    } else if (tag == "DONE") {
      words >> out.done >> out.tasks;
    }
  }
  return out;
}

// "start i server" / "end i server" lines of the logged scenario.
struct TaskLog {
  std::map<int, std::vector<std::string>> starts, ends;
};

TaskLog parse_task_log(const std::string& text) {
  TaskLog log;
  std::istringstream in(text);
  std::string what, server;
  int i = 0;
  while (in >> what >> i >> server) (what == "start" ? log.starts : log.ends)[i].push_back(server);
  return log;
}

class SlurmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      cluster_ = new SlurmCluster();
    } catch (const std::exception& e) {
      setup_error_ = new std::string(e.what());
    }
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete setup_error_;
    setup_error_ = nullptr;
  }
  void SetUp() override {
    ASSERT_EQ(setup_error_, nullptr) << "cannot start Slurm: " << *setup_error_;
  }

  std::string work() const { return cluster_->dir() + "/work"; }

  std::string script(const std::string& name, const std::string& body) {
    const std::string path = work() + "/" + name;
    write_file(path, "#!/bin/bash\n" + body + "\n");
    fs::permissions(path, fs::perms::owner_all);
    return path;
  }

  // Waits for the job to end and for every process of it to be gone.
  void expect_job_gone(const std::string& job, const std::string& expected_state) {
    EXPECT_EQ(cluster_->wait_job_end(job, 90s), expected_state)
        << "job " << job << "\n"
        << file_or_empty(work() + "/job-" + job + ".out") << cluster_->logs();
    std::vector<int> left;
    EXPECT_TRUE(wait_until(
        [&] {
          left = cluster_->job_processes(job);
          return left.empty();
        },
        15s, "the processes of job " + job + " to exit"))
        << left.size() << " process(es) of job " << job << " remain";
  }

  std::string job_output(const std::string& job) {
    return file_or_empty(work() + "/job-" + job + ".out");
  }

  static SlurmCluster* cluster_;
  static std::string* setup_error_;
};

SlurmCluster* SlurmTest::cluster_ = nullptr;
std::string* SlurmTest::setup_error_ = nullptr;

std::vector<std::string> job_args(const std::string& work, std::vector<std::string> extra) {
  std::vector<std::string> args = {"--chdir=" + work, "--output=" + work + "/job-%j.out"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(SlurmEnvTest, ParsesSqueueTimeLeft) {
  EXPECT_EQ(slurm::parse_time_left("4:57\n"), 4 * 60 + 57);
  EXPECT_EQ(slurm::parse_time_left("1:04:57"), 3600 + 4 * 60 + 57);
  EXPECT_EQ(slurm::parse_time_left("2-01:04:57"), 2 * 86400 + 3600 + 4 * 60 + 57);
  EXPECT_EQ(slurm::parse_time_left("UNLIMITED"), std::nullopt);
  EXPECT_EQ(slurm::parse_time_left(""), std::nullopt);
}

TEST(SlurmEnvTest, NamesAMissingProgram) {
  try {
    slurm::resolve_program("no-such-program-here");
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-program-here not found in PATH"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(slurm::resolve_program("sh").substr(0, 1), "/");
}

// sbatch -N 3 of `srun clupy --slurm-run`: one cluster over the three nodes, the program's
// results right, tasks on every node, and nothing left when the job ends.
TEST_F(SlurmTest, OneJobRunsTheProgramOnAllThreeNodes) {
  const std::string run =
      script("one.sh", std::string("echo SCRIPT_START_MS $(date +%s%3N)\nsrun ") + CLUPY_BINARY +
                           " --slurm-run " + SLURM_PROGRAM + " spread 60 100\n" +
                           "echo PRIMES_BEGIN\nsrun " + CLUPY_BINARY + " --slurm-run " +
                           PRIMES_EXAMPLE + "\necho \"PRIMES_STATUS $?\"");
  const long long submitted = now_ms();
  const std::string job =
      cluster_->sbatch(job_args(work(), {"-N3", "--ntasks-per-node=1", "-c1", run}));
  expect_job_gone(job, "COMPLETED");
  const std::string text = job_output(job);
  const auto out = parse_program(text.substr(0, text.find("PRIMES_BEGIN")));
  EXPECT_EQ(out.done, 60) << text;
  EXPECT_EQ(out.tasks, 60);
  EXPECT_EQ(out.servers_at_start, 3u) << "the program starts once every node's server is there";
  EXPECT_NE(out.master_url.find("clupy://127.0.0.1:"), std::string::npos) << out.master_url;
  std::set<std::string> servers;
  for (const auto& [i, where] : out.results) {
    EXPECT_EQ(where.size(), 1u) << "task " << i;
    servers.insert(where.begin(), where.end());
  }
  EXPECT_EQ(servers, (std::set<std::string>{"n1", "n2", "n3"})) << text;
  // The original example on the same kind of cluster: its values, and the cluster it used.
  EXPECT_NE(text.find("primes(100) = 2 5"), std::string::npos) << text;
  EXPECT_NE(text.find("primes(199) =\n"), std::string::npos) << text;
  EXPECT_NE(text.find("100 of 100 tasks succeeded on clupy://127.0.0.1:"), std::string::npos);
  EXPECT_NE(text.find("PRIMES_STATUS 0"), std::string::npos) << text;
  // Every daemon stopped in order: the servers unregistered before the master went.
  EXPECT_EQ(text.find("lost the master"), std::string::npos) << text;
  std::printf("MEASURE sbatch_to_first_result_ms %lld\n", out.first_result_ms - submitted);
  // The part that is Slurm's: from sbatch to the batch script's first line.
  std::smatch started;
  if (std::regex_search(text, started, std::regex(R"(SCRIPT_START_MS (\d+))")))
    std::printf("MEASURE sbatch_to_script_start_ms %lld\n", std::stoll(started[1]) - submitted);
}

// Two jobs at once on the same nodes: two masters on ports the OS chose, each program on its
// own cluster of three servers.
TEST_F(SlurmTest, TwoJobsAtOnceUseTheirOwnClusters) {
  const std::string run = script("two.sh", std::string("srun ") + CLUPY_BINARY + " --slurm-run " +
                                               SLURM_PROGRAM + " spread 40 150");
  const std::string a =
      cluster_->sbatch(job_args(work(), {"-N3", "--ntasks-per-node=1", "-c1", run}));
  const std::string b =
      cluster_->sbatch(job_args(work(), {"-N3", "--ntasks-per-node=1", "-c1", run}));
  EXPECT_TRUE(wait_until(
      [&] { return cluster_->job_state(a) == "RUNNING" && cluster_->job_state(b) == "RUNNING"; },
      30s, "both jobs running at once"));
  expect_job_gone(a, "COMPLETED");
  expect_job_gone(b, "COMPLETED");
  const auto out_a = parse_program(job_output(a));
  const auto out_b = parse_program(job_output(b));
  EXPECT_EQ(out_a.done, 40) << job_output(a);
  EXPECT_EQ(out_b.done, 40) << job_output(b);
  EXPECT_EQ(out_a.servers_at_start, 3u);
  EXPECT_EQ(out_b.servers_at_start, 3u);
  EXPECT_FALSE(out_a.master_url.empty());
  EXPECT_NE(out_a.master_url, out_b.master_url);
  // Each published in its own job folder.
  EXPECT_NE(file_or_empty(work() + "/.clupy/" + a + "/cluster.env").find(out_a.master_url),
            std::string::npos);
  EXPECT_NE(file_or_empty(work() + "/.clupy/" + b + "/cluster.env").find(out_b.master_url),
            std::string::npos);
}

// A job whose program is not there fails at once, naming it, and leaves nothing behind.
TEST_F(SlurmTest, AMissingProgramIsNamed) {
  const std::string run =
      script("missing.sh", std::string("srun ") + CLUPY_BINARY + " --slurm-run ./not-here");
  const std::string job =
      cluster_->sbatch(job_args(work(), {"-N2", "--ntasks-per-node=1", "-c1", run}));
  expect_job_gone(job, "FAILED");
  const std::string text = job_output(job);
  EXPECT_NE(text.find("program ./not-here not found"), std::string::npos) << text;
  EXPECT_NE(text.find("the first task of the step failed"), std::string::npos) << text;
}

// scancel of a cluster job (`srun clupy --slurm`, no program): SIGTERM reaches every process of
// the step; idle servers unregister at once and every daemon of the job is gone well within
// KillWait.
TEST_F(SlurmTest, ScancelOfAClusterJobStopsEveryDaemon) {
  const std::string run =
      script("cluster.sh", std::string("srun ") + CLUPY_BINARY + " --slurm --slurm-poll 1s");
  const std::string job =
      cluster_->sbatch(job_args(work(), {"-N3", "--ntasks-per-node=1", "-c1", run}));
  const std::string folder = work() + "/.clupy/" + job;
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string env = file_or_empty(folder + "/cluster.env");
        const auto url_at = env.find("CLUPY_MASTER_URL=");
        if (url_at == std::string::npos) return false;
        const std::string url = env.substr(url_at + 17, env.find('\n', url_at) - url_at - 17);
        auto shown = run_command({CLUPY_BINARY, "info", "--json", "--master-url", url,
                                  "--token-file", folder + "/token"});
        std::size_t servers = 0, at = 0;
        while ((at = shown.output.find("\"server_id\"", at)) != std::string::npos) ++servers, ++at;
        return servers == 3;
      },
      30s, "three servers registered"))
      << job_output(job) << cluster_->logs();
  const long long cancelled_at = now_ms();
  ASSERT_EQ(run_command({"scancel", job}).status, 0);
  std::vector<int> left;
  ASSERT_TRUE(wait_until(
      [&] {
        left = cluster_->job_processes(job);
        return left.empty();
      },
      20s, "every process of the job gone"))
      << left.size() << " left\n"
      << job_output(job);
  std::printf("MEASURE scancel_to_cluster_gone_ms %lld\n", now_ms() - cancelled_at);
  EXPECT_EQ(cluster_->wait_job_end(job, 30s), "CANCELLED");
  const std::string text = job_output(job);
  for (const char* server : {"n1", "n2", "n3"})
    EXPECT_NE(text.find(std::string("server ") + server + " stopping"), std::string::npos)
        << server << "\n"
        << text;
}

// What a server task says when it cannot join: no cluster in the folder (not shared), a token
// file others can read, a master address that does not answer.
TEST_F(SlurmTest, ServersNameWhyTheyCannotJoin) {
  auto join = [&](const std::string& folder) {
    return run_command(
        {"srun", "-N1", CLUPY_BINARY, "--slurm", "--slurm-join", folder, "--slurm-wait", "2s"});
  };
  const std::string folder = work() + "/.clupy/not-a-cluster";
  fs::create_directories(folder);
  auto none = join(folder);
  EXPECT_NE(none.status, 0);
  EXPECT_NE(none.output.find("no master published in " + folder + "/cluster.env after 2 s"),
            std::string::npos)
      << none.output;

  const int port = free_loopback_port();
  write_file(folder + "/token", "0123456789abcdef\n");
  ::chmod((folder + "/token").c_str(), 0644);
  write_file(folder + "/cluster.env", "CLUPY_MASTER_URL=clupy://127.0.0.1:" + std::to_string(port) +
                                          "\nCLUPY_TOKEN_FILE=" + folder +
                                          "/token\nCLUPY_SLURM_STEP=0.0\n");
  auto loose = join(folder);
  EXPECT_NE(loose.status, 0);
  EXPECT_NE(loose.output.find("token file " + folder + "/token is readable by others"),
            std::string::npos)
      << loose.output;

  ::chmod((folder + "/token").c_str(), 0600);
  auto unreachable = join(folder);
  EXPECT_NE(unreachable.status, 0);
  EXPECT_NE(unreachable.output.find("cannot reach the master at clupy://127.0.0.1:" +
                                    std::to_string(port)),
            std::string::npos)
      << unreachable.output;
}

// The cluster job of the drain tests: one node, a program that waits for `servers` servers and
// then runs `tasks` logged tasks of `ms` each.
struct ClusterJob {
  std::string id, folder, log;
};

// --slurm-submit 2 adds two server jobs; scancel of one drains it: it hands back what it had
// not started, finishes its running task, unregisters; every task completes, each ran once.
TEST_F(SlurmTest, ServersJoinWithSlurmSubmitAndLeaveOnScancel) {
  const std::string log = work() + "/scancel-tasks.log";
  const std::string run =
      script("scancel-cluster.sh", std::string("srun ") + CLUPY_BINARY + " --slurm-run " +
                                       SLURM_PROGRAM + " logged 24 1500 " + log + " 3");
  const std::string job = cluster_->sbatch(job_args(work(), {"-N1", "-w", "n1", "-c1", run}));
  const std::string folder = work() + "/.clupy/" + job;
  ASSERT_TRUE(
      wait_until([&] { return fs::exists(folder + "/cluster.env"); }, 30s, "the cluster published"))
      << job_output(job) << cluster_->logs();
  auto submitted = run_command({CLUPY_BINARY, "--slurm-submit", "2", "--slurm-join", folder, "-N1",
                                "-c1", "--chdir=" + work(), "--output=" + work() + "/job-%j.out"});
  ASSERT_EQ(submitted.status, 0) << submitted.output;
  std::istringstream ids(submitted.output);
  std::string first, second;
  ids >> first >> second;
  ASSERT_FALSE(second.empty()) << submitted.output;
  // Once the first server job runs a task, cancel it.
  std::string cancelled_server;
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& [i, where] : parse_task_log(file_or_empty(log)).starts)
          for (const auto& s : where)
            if (s.find("-j" + first) != std::string::npos) cancelled_server = s;
        return !cancelled_server.empty();
      },
      60s, "a task on server job " + first))
      << job_output(job) << job_output(first);
  const long long cancelled_at = now_ms();
  ASSERT_EQ(run_command({"scancel", first}).status, 0);
  // Gone from the cluster's registry (unregistered, not left to expire).
  ASSERT_TRUE(wait_until(
      [&] {
        auto shown =
            run_command({CLUPY_BINARY, "info", "--master-url",
                         read_file(folder + "/cluster.env")
                             .substr(17, read_file(folder + "/cluster.env").find('\n') - 17),
                         "--token-file", folder + "/token"});
        return shown.status == 0 && shown.output.find(cancelled_server) == std::string::npos;
      },
      20s, "server " + cancelled_server + " gone from the registry"));
  std::printf("MEASURE scancel_to_server_gone_ms %lld\n", now_ms() - cancelled_at);

  expect_job_gone(job, "COMPLETED");
  expect_job_gone(first, "CANCELLED");
  expect_job_gone(second, "COMPLETED");
  const std::string text = job_output(job);
  auto out = parse_program(text);
  EXPECT_EQ(out.done, 24) << text;
  auto tasks = parse_task_log(file_or_empty(log));
  int on_cancelled = 0;
  for (int i = 0; i < 24; ++i) {
    ASSERT_EQ(out.results[i].size(), 1u) << "task " << i << "\n" << text;
    EXPECT_EQ(tasks.starts[i].size(), 1u) << "task " << i << " ran more than once";
    EXPECT_EQ(tasks.ends[i], tasks.starts[i]) << "task " << i << " was cut short";
    on_cancelled += out.results[i][0] == cancelled_server;
  }
  EXPECT_GE(on_cancelled, 1);
  const std::string server_log = job_output(first);
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(server_log, m, std::regex(R"(draining: (\d+) task\(s\) handed back)")))
      << server_log;
  EXPECT_GE(std::stoi(m[1]), 1) << "it held tasks it had not started: they ran elsewhere";
  EXPECT_NE(text.find("server " + cancelled_server + " unregistered"), std::string::npos) << text;
}

// A server job whose time limit comes near (shortened with scontrol update) drains before it:
// nothing is killed by the limit, the tasks it had not started run elsewhere, each once.
TEST_F(SlurmTest, AServerJobDrainsBeforeItsTimeLimit) {
  const std::string log = work() + "/limit-tasks.log";
  const std::string run =
      script("limit-cluster.sh", std::string("srun ") + CLUPY_BINARY + " --slurm-run " +
                                     SLURM_PROGRAM + " logged 16 1500 " + log + " 2");
  const std::string job = cluster_->sbatch(job_args(work(), {"-N1", "-w", "n1", "-c1", run}));
  const std::string folder = work() + "/.clupy/" + job;
  ASSERT_TRUE(
      wait_until([&] { return fs::exists(folder + "/cluster.env"); }, 30s, "the cluster published"))
      << job_output(job) << cluster_->logs();
  auto submitted =
      run_command({CLUPY_BINARY, "--slurm-submit", "1", "--slurm-join", folder,
                   "--slurm-drain-before", "50s", "--slurm-poll", "500ms", "-N1", "-c1",
                   "--time=10", "--chdir=" + work(), "--output=" + work() + "/job-%j.out"});
  ASSERT_EQ(submitted.status, 0) << submitted.output;
  std::string server_job = submitted.output.substr(0, submitted.output.find('\n'));
  ASSERT_TRUE(
      wait_until([&] { return file_or_empty(log).find("-j" + server_job) != std::string::npos; },
                 60s, "a task on the server job"))
      << job_output(job) << job_output(server_job);
  // One minute from its start: well under 50 s left now, so it drains at its next look.
  ASSERT_EQ(run_command({"scontrol", "update", "JobId=" + server_job, "TimeLimit=1"}).status, 0);
  expect_job_gone(server_job, "COMPLETED");
  expect_job_gone(job, "COMPLETED");
  const std::string server_log = job_output(server_job);
  EXPECT_NE(server_log.find("time limit is"), std::string::npos) << server_log;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(server_log, m, std::regex(R"(draining: (\d+) task\(s\) handed back)")))
      << server_log;
  EXPECT_GE(std::stoi(m[1]), 1) << server_log;
  auto out = parse_program(job_output(job));
  EXPECT_EQ(out.done, 16) << job_output(job);
  auto tasks = parse_task_log(file_or_empty(log));
  for (int i = 0; i < 16; ++i) {
    ASSERT_EQ(out.results[i].size(), 1u) << "task " << i;
    EXPECT_EQ(tasks.starts[i].size(), 1u) << "task " << i << " ran more than once";
    EXPECT_EQ(tasks.ends[i], tasks.starts[i]) << "task " << i << " was cut short";
  }
}

}  // namespace
}  // namespace clupy::test
