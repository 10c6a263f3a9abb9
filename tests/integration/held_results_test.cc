// Held results end to end (docs/protocol.md#held-results): results of at least the master's
// result_threshold stay on the servers that made them. Real master and server processes and a
// real client program (held_program) whose own image the workers run; the master's and the
// servers' /metrics prove which path the bytes took.
#include <signal.h>
#include <sys/wait.h>

#include <sstream>

#include "held_fixture.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

TEST_F(HeldResultsTest, HundredStageChainOfFourMebibyteValuesNeverCrossesTheMaster) {
  start_cluster(2);
  constexpr long kValueBytes = 4 << 20;
  const std::string out = run_program("chain", {"chain", "100", std::to_string(kValueBytes)});
  EXPECT_EQ(line_starting(out, "CHAIN "), "CHAIN value 100 size " + std::to_string(kValueBytes))
      << out;
  // 101 results (the seed and 100 stages), each held where it was made; each stage got the
  // previous value by reference, and no outcome above the threshold went through the master.
  EXPECT_EQ(metric("clupy_results_held_total"), 101);
  EXPECT_EQ(metric("clupy_task_inputs_referenced_total"), 100);
  EXPECT_EQ(metric("clupy_task_inputs_spliced_total"), 0);
  EXPECT_LT(metric("clupy_result_bytes_received_total"), kThreshold);
  EXPECT_LT(metric("clupy_result_bytes_delivered_total"), kThreshold);
  EXPECT_EQ(metric("clupy_result_bytes_relayed_total"), 0);
  // Each stage read its input where it ran (placed on the holder) or pulled it from the other.
  EXPECT_EQ(servers_total("clupy_server_inputs_read_locally_total") +
                servers_total("clupy_server_inputs_pulled_total"),
            100);
  EXPECT_EQ(servers_total("clupy_server_input_pulls_failed_total"), 0);
  EXPECT_GE(servers_total("clupy_server_inputs_read_locally_total"), 90);
  // The program fetched the last value straight from its server.
  EXPECT_GE(servers_total("clupy_server_result_bytes_served_total"), kValueBytes);
  // The program is gone: nothing stays held.
  EXPECT_TRUE(held_bytes_drain());
  EXPECT_EQ(metric("clupy_held_result_bytes"), 0);
}

TEST_F(HeldResultsTest, MapOfSixtyFourAndTreeReductionKeepResultsOnTheServers) {
  start_cluster(2);
  constexpr long kValueBytes = 1 << 20;
  const std::string out = run_program("tree", {"tree", "64", std::to_string(kValueBytes)});
  // The sum of i*i for i in 0..63.
  EXPECT_EQ(line_starting(out, "TREE "), "TREE value 85344 size " + std::to_string(kValueBytes))
      << out;
  EXPECT_EQ(metric("clupy_results_held_total"), 64 + 63);
  EXPECT_EQ(metric("clupy_task_inputs_referenced_total"), 63 * 2);
  EXPECT_LT(metric("clupy_result_bytes_received_total"), kThreshold);
  EXPECT_LT(metric("clupy_result_bytes_delivered_total"), kThreshold);
  EXPECT_EQ(metric("clupy_tasks_waiting"), 0);
  EXPECT_TRUE(held_bytes_drain());
}

TEST_F(HeldResultsTest, DroppingTheLastFuturesFreesTheServersMemory) {
  start_cluster(2);
  ChildProcess program = start_program("hold", {"hold", "4", std::to_string(1 << 20)});
  ASSERT_TRUE(wait_until([&] { return program.log().find("HELD ") != std::string::npos; },
                         seconds(60), "the results to be fetched"))
      << program.log();
  // 1+4+9+16: the values came from the servers, which still hold them for the futures.
  EXPECT_EQ(line_starting(program.log(), "HELD "), "HELD 30") << program.log();
  EXPECT_GE(servers_total("clupy_server_held_result_bytes"), 4LL << 20);
  EXPECT_EQ(servers_total("clupy_server_held_results"), 4);
  EXPECT_GE(servers_total("clupy_server_result_bytes_served_total"), 4LL << 20);
  EXPECT_EQ(metric("clupy_result_bytes_relayed_total"), 0);
  write_file(dir_.file("drop"), "");
  ASSERT_TRUE(wait_until([&] { return program.log().find("DROPPED") != std::string::npos; },
                         seconds(30), "the program to drop its futures"));
  // Freed while the program still runs: by the release of its last futures.
  EXPECT_TRUE(held_bytes_drain());
  EXPECT_EQ(metric("clupy_results_freed_total"), 4);
  write_file(dir_.file("exit"), "");
  ASSERT_TRUE(program.wait(seconds(30))) << program.log();
}

TEST_F(HeldResultsTest, ResultsPastResultMemoryAreSpilledToDiskAndStillServed) {
  start_cluster(1, "data_bind: 127.0.0.1\nresult_memory: 1MiB\n");
  ChildProcess program = start_program("spill", {"hold", "4", std::to_string(1 << 20)});
  ASSERT_TRUE(wait_until([&] { return program.log().find("HELD ") != std::string::npos; },
                         seconds(60), "the results to be fetched"))
      << program.log();
  EXPECT_EQ(line_starting(program.log(), "HELD "), "HELD 30") << program.log();
  // Four results of 1 MiB and some bytes against 1 MiB of memory: all but the newest on disk.
  EXPECT_GE(server_metric("s1", "clupy_server_held_result_bytes_spilled"), 3LL << 20);
  EXPECT_GE(server_metric("s1", "clupy_server_result_bytes_spilled_total"), 3LL << 20);
  write_file(dir_.file("drop"), "");
  EXPECT_TRUE(held_bytes_drain());
  EXPECT_EQ(server_metric("s1", "clupy_server_held_result_bytes_spilled"), 0);
  write_file(dir_.file("exit"), "");
  ASSERT_TRUE(program.wait(seconds(30))) << program.log();
}

TEST_F(HeldResultsTest, AClientThatDisconnectsHasItsResultsFreed) {
  start_cluster(2);
  ChildProcess program = start_program("hold-killed", {"hold", "4", std::to_string(1 << 20)});
  ASSERT_TRUE(wait_until([&] { return program.log().find("HELD ") != std::string::npos; },
                         seconds(60), "the results to be fetched"))
      << program.log();
  EXPECT_EQ(servers_total("clupy_server_held_results"), 4);
  program.signal(SIGKILL);
  program.wait(seconds(10));
  EXPECT_TRUE(held_bytes_drain());
  EXPECT_EQ(metric("clupy_held_result_bytes"), 0);
}

TEST_F(HeldResultsTest, WithoutADataPortTheValueComesThroughTheMaster) {
  start_cluster(1, "data_port: off\n");
  const std::string out = run_program("one", {"one", std::to_string(1 << 20)});
  EXPECT_EQ(line_starting(out, "ONE "), "ONE value 9 size " + std::to_string(1 << 20)) << out;
  EXPECT_EQ(metric("clupy_results_held_total"), 1);
  EXPECT_GE(metric("clupy_result_bytes_relayed_total"), 1 << 20);
  EXPECT_EQ(servers_total("clupy_server_result_bytes_served_total"), 0);
}

TEST_F(HeldResultsTest, AThresholdOfZeroSendsEveryResultThroughTheMaster) {
  write_file(dir_.file("clupy.master.yaml"), "result_threshold: 0\n");
  start_cluster(1);
  const std::string out = run_program("one-unheld", {"one", std::to_string(1 << 20)});
  EXPECT_EQ(line_starting(out, "ONE "), "ONE value 9 size " + std::to_string(1 << 20)) << out;
  EXPECT_EQ(metric("clupy_results_held_total"), 0);
  EXPECT_GE(metric("clupy_result_bytes_delivered_total"), 1 << 20);
}

TEST_F(HeldResultsTest, AnOlderClientGetsItsValuesThroughTheMasterAsBefore) {
  start_cluster(1);
  ChildProcess program = ChildProcess({{HELD_PROGRAM, "one", std::to_string(1 << 20)},
                                       {{"CLUPY_MASTER_URL", master_url()},
                                        {"CLUPY_TOKEN_FILE", token_file()},
                                        {"CLUPY_TEST_PROTOCOL_MINOR", "3"}},
                                       dir_.path(),
                                       dir_.file("old-client.out")});
  ASSERT_TRUE(program.wait(seconds(120))) << program.log();
  EXPECT_EQ(line_starting(program.log(), "ONE "), "ONE value 9 size " + std::to_string(1 << 20))
      << program.log();
  EXPECT_EQ(metric("clupy_results_held_total"), 0);
  EXPECT_GE(metric("clupy_result_bytes_delivered_total"), 1 << 20);
}

TEST_F(HeldResultsTest, AFutureFetchedAlreadyIsPassedOnByItsReference) {
  start_cluster(1);
  const std::string out = run_program("after", {"after", std::to_string(1 << 20)});
  EXPECT_EQ(line_starting(out, "AFTER "), "AFTER value 8 size " + std::to_string(1 << 20)) << out;
  EXPECT_EQ(metric("clupy_results_held_total"), 2);
  EXPECT_EQ(metric("clupy_task_inputs_spliced_total"), 0);
  EXPECT_EQ(metric("clupy_task_inputs_referenced_total"), 2);
  // Both places were filled on the server, from what it held.
  EXPECT_EQ(server_metric("s1", "clupy_server_inputs_read_locally_total"), 2);
  EXPECT_LT(metric("clupy_result_bytes_received_total"), kThreshold);
}

TEST_F(HeldResultsTest, AServerOlderThanHeldResultsIsNotAskedToHoldAny) {
  write_file(dir_.file("clupy.server.yaml"), "data_bind: 127.0.0.1\n");
  http_port_ = free_loopback_port();
  start_master({"--registration-ttl", "3s", "--http-port", std::to_string(http_port_)});
  start_server("old", {"--capacity", "2"}, {{"CLUPY_TEST_PROTOCOL_MINOR", "3"}});
  ASSERT_TRUE(servers_become({"old"}));
  const std::string out = run_program("old-server", {"tree", "8", std::to_string(1 << 20)});
  // 0+1+4+...+49: every value through the master, as with a 1.3 server.
  EXPECT_EQ(line_starting(out, "TREE "), "TREE value 140 size " + std::to_string(1 << 20)) << out;
  EXPECT_EQ(metric("clupy_results_held_total"), 0);
  EXPECT_EQ(metric("clupy_task_inputs_spliced_total"), 7 * 2);
  EXPECT_GE(metric("clupy_result_bytes_received_total"), 15LL << 20);
}

// Lineage (docs/protocol.md#held-results): a held result lost with its server is made again by
// rerunning its producer, up to its retries; with none, what needs it fails kLost naming it.
class LineageTest : public HeldResultsTest {
 protected:
  struct Run {
    std::string server, task;
  };
  // Where each run of a task that printed `marker` ran, from the prefixes of the program's
  // output: "(s1 task 1) PIECE_RUNNING".
  static std::vector<Run> runs_of(const std::string& log, const std::string& marker) {
    std::vector<Run> runs;
    for (auto at = log.find(") " + marker); at != std::string::npos;
         at = log.find(") " + marker, at + 1)) {
      const auto open = log.rfind('(', at);
      const std::string prefix = log.substr(open + 1, at - open - 1);
      runs.push_back({prefix.substr(0, prefix.find(' ')), prefix.substr(prefix.rfind(' ') + 1)});
    }
    return runs;
  }
  // s1 and s2 labelled tier=a, s3 tier=b.
  void start_tiered_cluster() {
    write_file(dir_.file("clupy.server.yaml"), "data_bind: 127.0.0.1\n");
    http_port_ = free_loopback_port();
    start_master({"--registration-ttl", "3s", "--http-port", std::to_string(http_port_)});
    for (const std::string id : {"s1", "s2", "s3"}) {
      server_http_[id] = free_loopback_port();
      std::vector<std::string> args{"--capacity", "2", "--http-port",
                                    std::to_string(server_http_[id])};
      args.insert(args.end(), {"--label", id == "s3" ? "tier=b" : "tier=a"});
      start_server(id, args);
    }
    ASSERT_TRUE(servers_become({"s1", "s2", "s3"}));
  }
  // Kills the server `id` (SIGKILL, by its PID) and waits until the master has seen it go.
  void kill_server(const std::string& id, long long lost_before) {
    ASSERT_TRUE(servers_.count(id)) << "unknown server '" << id << "'";
    servers_[id].signal(SIGKILL);
    servers_[id].wait(seconds(10));
    server_http_.erase(id);
    ASSERT_TRUE(wait_until([&] { return metric("clupy_results_lost_total") > lost_before; },
                           seconds(30), "the master to see the held results lost"));
  }
  static int count_lines(const std::string& log, const std::string& start) {
    int count = 0;
    for (auto at = log.find(start); at != std::string::npos; at = log.find(start, at + 1))
      if (at == 0 || log[at - 1] == '\n') ++count;
    return count;
  }
};

TEST_F(LineageTest, AHeldInputLostWithItsServerIsMadeAgainForItsWaitingDependent) {
  start_cluster(2);
  ChildProcess program = start_program("lost", {"lost", std::to_string(1 << 20)});
  ASSERT_TRUE(wait_until([&] { return !runs_of(program.log(), "PIECE_RUNNING").empty(); },
                         seconds(60), "the held input to run"))
      << program.log();
  ASSERT_TRUE(wait_until([&] { return metric("clupy_results_held_total") >= 1; }, seconds(30),
                         "its result to be held"));
  const Run first = runs_of(program.log(), "PIECE_RUNNING").front();
  kill_server(first.server, 0);
  ASSERT_TRUE(program.wait(seconds(120))) << program.log();
  // 7 (the piece, made again on the other server) + 1.
  EXPECT_EQ(line_starting(program.log(), "LOST "), "LOST value 8 size " + std::to_string(1 << 20))
      << program.log();
  const std::vector<Run> runs = runs_of(program.log(), "PIECE_RUNNING");
  ASSERT_EQ(runs.size(), 2u) << program.log();
  EXPECT_NE(runs[1].server, first.server);
  EXPECT_EQ(metric("clupy_results_lost_total"), 1);
  EXPECT_EQ(metric("clupy_results_recomputed_total"), 1);
  EXPECT_EQ(metric("clupy_lineage_calls"), 0);  // the program is gone
}

TEST_F(LineageTest, WithNoRetriesAHeldInputLostWithItsServerFailsItsDependentWithLostOnce) {
  start_cluster(2);
  ChildProcess program = start_program("lost0", {"lost", std::to_string(1 << 20), "0"});
  ASSERT_TRUE(wait_until([&] { return !runs_of(program.log(), "PIECE_RUNNING").empty(); },
                         seconds(60), "the held input to run"))
      << program.log();
  ASSERT_TRUE(wait_until([&] { return metric("clupy_results_held_total") >= 1; }, seconds(30),
                         "its result to be held"));
  const Run run = runs_of(program.log(), "PIECE_RUNNING").front();
  kill_server(run.server, 0);
  ASSERT_TRUE(program.wait(seconds(120))) << program.log();
  const std::string lost = line_starting(program.log(), "LOST ");
  EXPECT_EQ(lost.rfind("LOST lost|", 0), 0u) << program.log();
  EXPECT_NE(lost.find("input task " + run.task + "'s result was held by server " + run.server +
                      ", which was lost (its task has no retries left)"),
            std::string::npos)
      << program.log();
  EXPECT_EQ(count_lines(program.log(), "LOST "), 1) << program.log();
  EXPECT_EQ(runs_of(program.log(), "PIECE_RUNNING").size(), 1u) << program.log();
  EXPECT_EQ(metric("clupy_results_lost_total"), 1);
  EXPECT_EQ(metric("clupy_results_recomputed_total"), 0);
  EXPECT_EQ(metric("clupy_lineage_calls"), 0);
}

TEST_F(LineageTest, APipelineWhoseServerDiesMidwayRerunsTwoLevelsOfLostResults) {
  start_tiered_cluster();
  const std::string gate = dir_.file("pipeline-gate");
  ChildProcess program =
      start_program("pipeline", {"pipeline", std::to_string(1 << 20), "-1", gate});
  // p and q = step(p) are held, on one tier=a server (q was placed on its input's holder), and
  // the program has p's value; r waits for the gate.
  ASSERT_TRUE(wait_until(
      [&] {
        return metric("clupy_results_held_total") >= 2 &&
               program.log().find("\nP ") != std::string::npos;
      },
      seconds(60), "p and q to be held"))
      << program.log();
  const std::vector<Run> pieces = runs_of(program.log(), "PIECE_RUNNING");
  const std::vector<Run> steps = runs_of(program.log(), "STEP_RUNNING");
  ASSERT_EQ(pieces.size(), 1u) << program.log();
  ASSERT_EQ(steps.size(), 1u) << program.log();
  ASSERT_EQ(pieces[0].server, steps[0].server) << program.log();
  EXPECT_EQ(metric("clupy_lineage_calls"), 2);  // p's and q's
  kill_server(steps[0].server, 0);
  write_file(gate, "");
  ASSERT_TRUE(program.wait(seconds(120))) << program.log();
  // (7 + 1) + 1, with q made again from p made again.
  EXPECT_EQ(line_starting(program.log(), "PIPELINE "),
            "PIPELINE value 9 size " + std::to_string(1 << 20))
      << program.log();
  EXPECT_EQ(line_starting(program.log(), "P "), "P value 7 size " + std::to_string(1 << 20));
  // The program's Future of p kept its value: it was not fetched again.
  const std::vector<Run> pieces_after = runs_of(program.log(), "PIECE_RUNNING");
  const std::vector<Run> steps_after = runs_of(program.log(), "STEP_RUNNING");
  ASSERT_EQ(pieces_after.size(), 2u) << program.log();
  ASSERT_EQ(steps_after.size(), 2u) << program.log();
  // Made again on the other tier=a server.
  const std::string other = steps[0].server == "s1" ? "s2" : "s1";
  EXPECT_EQ(pieces_after[1].server, other);
  EXPECT_EQ(steps_after[1].server, other);
  EXPECT_EQ(metric("clupy_results_lost_total"), 2);
  EXPECT_EQ(metric("clupy_results_recomputed_total"), 2);
  // Nothing through the master but the small gate value.
  EXPECT_LT(metric("clupy_result_bytes_received_total"), kThreshold);
  EXPECT_EQ(metric("clupy_result_bytes_relayed_total"), 0);
  EXPECT_TRUE(held_bytes_drain());
  EXPECT_EQ(metric("clupy_lineage_calls"), 0);
  EXPECT_EQ(metric("clupy_lineage_bytes"), 0);
}

TEST_F(LineageTest, APipelineWithNoRetriesFailsWithLostNamingTheLostTaskOnce) {
  start_tiered_cluster();
  const std::string gate = dir_.file("pipeline0-gate");
  ChildProcess program =
      start_program("pipeline0", {"pipeline", std::to_string(1 << 20), "0", gate});
  ASSERT_TRUE(wait_until([&] { return metric("clupy_results_held_total") >= 2; }, seconds(60),
                         "p and q to be held"))
      << program.log();
  const std::vector<Run> steps = runs_of(program.log(), "STEP_RUNNING");
  ASSERT_EQ(steps.size(), 1u) << program.log();
  EXPECT_EQ(metric("clupy_lineage_calls"), 0);  // with no retries, nothing is kept
  kill_server(steps[0].server, 0);
  ASSERT_TRUE(program.wait(seconds(120))) << program.log();
  const std::string line = line_starting(program.log(), "PIPELINE ");
  EXPECT_EQ(line.rfind("PIPELINE lost|", 0), 0u) << program.log();
  EXPECT_NE(line.find("input task " + steps[0].task + "'s result was held by server " +
                      steps[0].server + ", which was lost (its task has no retries left)"),
            std::string::npos)
      << program.log();
  EXPECT_EQ(count_lines(program.log(), "PIPELINE "), 1) << program.log();
  EXPECT_EQ(runs_of(program.log(), "STEP_RUNNING").size(), 1u) << program.log();
  EXPECT_EQ(metric("clupy_results_recomputed_total"), 0);
  write_file(gate, "");  // lets the gate task end
}

TEST_F(LineageTest, AFutureWhoseServerDiesBeforeItsValueWasFetchedStillGetsIt) {
  start_cluster(2);
  const std::string gate = dir_.file("fetch-gate");
  ChildProcess program({{HELD_PROGRAM, "later", std::to_string(1 << 20)},
                        {{"CLUPY_MASTER_URL", master_url()},
                         {"CLUPY_TOKEN_FILE", token_file()},
                         {"CLUPY_TEST_HELD_FETCH_GATE", gate}},
                        dir_.path(),
                        dir_.file("later.out")});
  ASSERT_TRUE(wait_until([&] { return metric("clupy_results_held_total") >= 1; }, seconds(60),
                         "the result to be held"))
      << program.log();
  const std::vector<Run> runs = runs_of(program.log(), "PIECE_RUNNING");
  ASSERT_EQ(runs.size(), 1u) << program.log();
  kill_server(runs[0].server, 0);
  write_file(gate, "");  // the program fetches now: its server is gone
  ASSERT_TRUE(program.wait(seconds(120))) << program.log();
  EXPECT_EQ(line_starting(program.log(), "LATER "), "LATER value 7 size " + std::to_string(1 << 20))
      << program.log();
  EXPECT_EQ(runs_of(program.log(), "PIECE_RUNNING").size(), 2u) << program.log();
  EXPECT_EQ(metric("clupy_results_recomputed_total"), 1);
  // The fetch waited on the master for the rerun and came through it.
  EXPECT_GE(metric("clupy_result_bytes_relayed_total"), 1 << 20);
}

}  // namespace
}  // namespace clupy::test
