// Futures as arguments end to end (docs/api.md#futures-as-arguments): real master and server
// processes, and a real client program (dataplane_program) whose own image the workers run.
#include <signal.h>
#include <sys/wait.h>

#include <sstream>

#include "cluster_fixture.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

class DataPlaneTest : public ClusterFixture {
 protected:
  void start_cluster(int servers, std::map<std::string, std::string> master_env = {}) {
    http_port_ = free_loopback_port();
    start_master({"--registration-ttl", "3s", "--http-port", std::to_string(http_port_)}, 0,
                 std::move(master_env));
    std::set<std::string> ids;
    for (int i = 1; i <= servers; ++i) {
      start_server("s" + std::to_string(i), {"--capacity", "2"});
      ids.insert("s" + std::to_string(i));
    }
    ASSERT_TRUE(servers_become(ids));
  }
  ChildProcess start_program(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), DATAPLANE_PROGRAM);
    return ChildProcess({args,
                         {{"CLUPY_MASTER_URL", master_url()}, {"CLUPY_TOKEN_FILE", token_file()}},
                         dir_.path(),
                         dir_.file(name + ".out")});
  }
  // Runs the program to completion; returns its output.
  std::string run_program(const std::string& name, std::vector<std::string> args) {
    ChildProcess program = start_program(name, std::move(args));
    auto status = program.wait(seconds(240));
    EXPECT_TRUE(status) << name << " did not finish:\n" << program.log();
    if (status) {
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << program.log();
    }
    return program.log();
  }
  // A counter or gauge of the master's /metrics; -1 when it is not there.
  long long metric(const std::string& name) {
    const std::string page =
        tcp_exchange(http_port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", seconds(10));
    const std::string key = "\n" + name + " ";
    const auto at = page.find(key);
    if (at == std::string::npos) return -1;
    return std::stoll(page.substr(at + key.size()));
  }
  int http_port_ = 0;
};

TEST_F(DataPlaneTest, HundredStageChainKeepsItsIntermediateValuesOffTheProgram) {
  // Values through the master (held_results_test covers values kept on the servers).
  write_file(dir_.file("clupy.master.yaml"), "result_threshold: 0\n");
  start_cluster(2);
  constexpr long kValueBytes = 256 * 1024;
  const std::string out = run_program("chain", {"chain", "100", std::to_string(kValueBytes)});
  EXPECT_NE(line_starting(out, "CHAIN stage=100 size=" + std::to_string(kValueBytes) + " "), "")
      << out;
  // 101 tasks (the seed and 100 stages): 100 values went from task to task on the master, and
  // only the last one came to the program; the other 100 were withheld.
  EXPECT_EQ(metric("clupy_task_inputs_spliced_total"), 100);
  EXPECT_EQ(metric("clupy_task_values_withheld_total"), 100);
  const long long delivered = metric("clupy_result_bytes_delivered_total");
  EXPECT_GE(delivered, kValueBytes);
  EXPECT_LT(delivered, 2 * kValueBytes) << "intermediate values travelled to the program";
  EXPECT_EQ(metric("clupy_tasks_waiting"), 0);
}

TEST_F(DataPlaneTest, TreeReductionOfSixtyFourMappedFuturesAndAVectorOfFutures) {
  start_cluster(2);
  const std::string out = run_program("tree", {"tree", "64"});
  // The sum of i*i for i in 0..63.
  EXPECT_EQ(line_starting(out, "TREE"), "TREE value 85344") << out;
  EXPECT_EQ(line_starting(out, "LIST"), "LIST value 85344") << out;
  EXPECT_EQ(line_starting(out, "MIXED"), "MIXED value 1009") << out;
  // 63 additions of two inputs, one sum of 64, one addition with one remote input.
  EXPECT_EQ(metric("clupy_task_inputs_spliced_total"), 63 * 2 + 64 + 1);
}

TEST_F(DataPlaneTest, AMasterOlderThanFuturesAsArgumentsGetsValuesTheProgramWaitedFor) {
  // A master of protocol 1.2 would run a task with its inputs missing: the program waits for
  // each input itself and sends calls with the values in them.
  start_cluster(2, {{"CLUPY_TEST_PROTOCOL_MINOR", "2"}});
  const std::string out = run_program("tree-old-master", {"tree", "64"});
  EXPECT_EQ(line_starting(out, "TREE"), "TREE value 85344") << out;
  EXPECT_EQ(line_starting(out, "LIST"), "LIST value 85344") << out;
  EXPECT_EQ(line_starting(out, "MIXED"), "MIXED value 1009") << out;
  EXPECT_EQ(metric("clupy_task_inputs_spliced_total"), 0);
  EXPECT_EQ(metric("clupy_tasks_waiting"), 0);
}

TEST_F(DataPlaneTest, FailingInputFailsItsDependentsWithDependencyNamingIt) {
  start_cluster(1);
  const std::string out = run_program("failing", {"failing"});
  const std::string input = line_starting(out, "INPUT ");
  ASSERT_EQ(input.rfind("INPUT exception|", 0), 0u) << out;
  const std::string input_id = input.substr(16, input.find('|', 16) - 16);
  const std::string first = line_starting(out, "FIRST ");
  EXPECT_EQ(first.rfind("FIRST dependency|", 0), 0u) << out;
  EXPECT_NE(first.find("input task " + input_id + " failed: exception std::runtime_error"),
            std::string::npos)
      << out;
  EXPECT_NE(first.find("input refused 7"), std::string::npos) << out;
  // The second names the first, whose own failure names the original input.
  const std::string second = line_starting(out, "SECOND ");
  EXPECT_EQ(second.rfind("SECOND dependency|", 0), 0u) << out;
  EXPECT_NE(second.find("failed: dependency: input task " + input_id), std::string::npos) << out;
  EXPECT_EQ(metric("clupy_tasks_waiting"), 0);
  EXPECT_EQ(metric("clupy_task_inputs_spliced_total"), 0);
}

TEST_F(DataPlaneTest, CancelledInputFailsItsDependentAndCancelledDependentLeavesItsInput) {
  start_cluster(1);
  const std::string out = run_program("cancel", {"cancel"});
  EXPECT_EQ(line_starting(out, "CANCEL ended"), "CANCEL ended=1") << out;
  EXPECT_EQ(line_starting(out, "CANCELLED_INPUT cancelled|").empty(), false) << out;
  const std::string dependent = line_starting(out, "DEPENDENT ");
  EXPECT_EQ(dependent.rfind("DEPENDENT dependency|", 0), 0u) << out;
  EXPECT_NE(dependent.find("failed: cancelled"), std::string::npos) << out;
  EXPECT_EQ(line_starting(out, "DROPPED cancelled|").empty(), false) << out;
  EXPECT_EQ(line_starting(out, "KEPT_INPUT"), "KEPT_INPUT value 6") << out;
  EXPECT_EQ(metric("clupy_tasks_waiting"), 0);
}

TEST_F(DataPlaneTest, AnInputLostWithItsServerRerunsAndItsDependentsWaitForIt) {
  start_cluster(2);
  ChildProcess program = start_program("rerun", {"rerun"});
  // The worker's line comes prefixed with its server: "(s1 task 1) SEED_RUNNING".
  std::string server;
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string log = program.log();
        const auto at = log.find(" task 1) SEED_RUNNING");
        if (at == std::string::npos) return false;
        server = log.substr(log.rfind('(', at) + 1, at - log.rfind('(', at) - 1);
        return true;
      },
      seconds(60), "the first input to start"))
      << program.log();
  ASSERT_TRUE(servers_.count(server)) << "unknown server '" << server << "':\n" << program.log();
  servers_[server].signal(SIGKILL);
  ASSERT_TRUE(program.wait(seconds(120))) << program.log();
  EXPECT_EQ(line_starting(program.log(), "RERUN"), "RERUN value 11") << program.log();
  // It ran twice: once on the killed server, once on the other.
  const std::string log = program.log();
  std::size_t runs = 0;
  for (auto at = log.find("SEED_RUNNING"); at != std::string::npos;
       at = log.find("SEED_RUNNING", at + 1))
    ++runs;
  EXPECT_EQ(runs, 2u) << log;
  EXPECT_GE(metric("clupy_tasks_rerun_total"), 1);
  EXPECT_EQ(metric("clupy_task_inputs_spliced_total"), 10);
}

TEST_F(DataPlaneTest, MasterLostWhileAChainWaitsEndsEveryFutureOnce) {
  start_cluster(1);
  ChildProcess program = start_program("master-lost", {"master-lost"});
  ASSERT_TRUE(wait_until([&] { return program.log().find("SUBMITTED") != std::string::npos; },
                         seconds(60), "the chain to be submitted"))
      << program.log();
  ASSERT_TRUE(wait_until([&] { return metric("clupy_tasks_waiting") == 5; }, seconds(30),
                         "the master to hold the chain's five dependents"));
  master_.signal(SIGKILL);
  ASSERT_TRUE(program.wait(seconds(120))) << program.log();
  // The six tasks the master knew fail kUnavailable (each fail callback once); the one that
  // waited in the program on a then() future of the last fails kDependency.
  EXPECT_EQ(line_starting(program.log(), "LOST"),
            "LOST ended=7 unavailable=6 dependency=1 callbacks=6")
      << program.log();
}

TEST_F(DataPlaneTest, InputsHeldBackByMaxInFlightAreWaitedForInTheProgram) {
  start_cluster(1);
  const std::string out = run_program("held", {"held"});
  EXPECT_EQ(line_starting(out, "HELD"), "HELD value 42") << out;
}

}  // namespace
}  // namespace clupy::test
