// Pushed calls end to end (docs/protocol.md#pushed-calls): a call of at least the master's
// push_threshold goes from the program straight to the server the master placed its task on,
// and a held outcome of it comes back on the same connection. Real master and server processes
// and the client program held_program; the daemons' /metrics prove which path the bytes took.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "held_fixture.hpp"

namespace clupy::test {
namespace {

constexpr long kCallBytes = 1 << 20;

class PushedCallsTest : public HeldResultsTest {
 protected:
  // The line scenario_echo prints when all `n` values were right.
  static std::string all_good(const std::string& label, int n) {
    return label + " ok " + std::to_string(n) + " of " + std::to_string(n);
  }
};

TEST_F(PushedCallsTest, LargeCallsGoStraightToTheirServersAndHeldValuesComeBackTheSameWay) {
  start_cluster(2);
  constexpr int kCalls = 16;
  const std::string out =
      run_program("echo", {"echo", std::to_string(kCalls), std::to_string(kCallBytes)});
  EXPECT_EQ(line_starting(out, "ECHO "), all_good("ECHO", kCalls)) << out;
  // Every call was placed once and pushed by the program to its server's data port: the master
  // saw none of their bytes.
  EXPECT_EQ(metric("clupy_call_tickets_total"), kCalls);
  // A call is its argument and some bytes of encoding.
  EXPECT_GT(metric("clupy_call_bytes_pushed_total"), static_cast<long long>(kCalls) * kCallBytes);
  EXPECT_LT(metric("clupy_call_bytes_pushed_total"),
            static_cast<long long>(kCalls) * (kCallBytes + 256));
  EXPECT_LT(metric("clupy_call_bytes_received_total"), kThreshold);
  EXPECT_EQ(metric("clupy_pushed_call_bytes_relayed_total"), 0);
  EXPECT_EQ(servers_total("clupy_server_calls_pushed_total"), kCalls);
  EXPECT_EQ(servers_total("clupy_server_calls_pushed_via_master_total"), 0);
  EXPECT_GE(servers_total("clupy_server_call_bytes_pushed_total"),
            static_cast<long long>(kCalls) * kCallBytes);
  // The large values (even calls) were held and pushed back on the same connections; none was
  // fetched and none crossed the master. The small ones came through the master.
  EXPECT_EQ(metric("clupy_results_held_total"), kCalls / 2);
  EXPECT_EQ(servers_total("clupy_server_results_pushed_total"), kCalls / 2);
  EXPECT_EQ(servers_total("clupy_server_result_bytes_served_total"), 0);
  EXPECT_LT(metric("clupy_result_bytes_received_total"), kThreshold);
  EXPECT_EQ(metric("clupy_result_bytes_relayed_total"), 0);
  EXPECT_EQ(servers_total("clupy_server_calls_awaited"), 0);
  EXPECT_TRUE(held_bytes_drain());
}

TEST_F(PushedCallsTest, AServerWhoseDataPortRefusesGetsTheCallsThroughTheMaster) {
  // The servers announce a data address where nothing listens: the program's dials are refused.
  const int closed = free_loopback_port();
  start_cluster(2,
                "data_bind: 127.0.0.1\ndata_address: 127.0.0.1:" + std::to_string(closed) + "\n");
  constexpr int kCalls = 8;
  const std::string out =
      run_program("echo", {"echo", std::to_string(kCalls), std::to_string(kCallBytes)});
  EXPECT_EQ(line_starting(out, "ECHO "), all_good("ECHO", kCalls)) << out;
  EXPECT_EQ(metric("clupy_call_tickets_total"), kCalls);
  EXPECT_GE(metric("clupy_pushed_call_bytes_relayed_total"),
            static_cast<long long>(kCalls) * kCallBytes);
  EXPECT_EQ(servers_total("clupy_server_calls_pushed_via_master_total"), kCalls);
  EXPECT_EQ(servers_total("clupy_server_calls_pushed_total"), 0);
  // Held values could not be fetched directly either: they came through the master.
  EXPECT_GE(metric("clupy_result_bytes_relayed_total"), (kCalls / 2) * kCallBytes);
}

TEST_F(PushedCallsTest, AServerWhoseDataPortDoesNotAnswerGetsTheCallsThroughTheMasterInTime) {
  // The servers announce a port that takes connections (the kernel's backlog) and never answers
  // them, as a data port behind a firewall that drops its packets would: the program's dials
  // time out and the calls go through the master, well within push_timeout.
  const int silent = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(silent, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(silent, 64), 0);
  ASSERT_EQ(::getsockname(silent, reinterpret_cast<sockaddr*>(&address), &length), 0);
  start_cluster(1, "data_bind: 127.0.0.1\ndata_address: 127.0.0.1:" +
                       std::to_string(ntohs(address.sin_port)) + "\n");
  constexpr int kCalls = 4;
  const auto started = std::chrono::steady_clock::now();
  const std::string out =
      run_program("echo", {"echo", std::to_string(kCalls), std::to_string(kCallBytes)});
  const auto took = std::chrono::steady_clock::now() - started;
  ::close(silent);
  EXPECT_EQ(line_starting(out, "ECHO "), all_good("ECHO", kCalls)) << out;
  EXPECT_EQ(servers_total("clupy_server_calls_pushed_via_master_total"), kCalls);
  EXPECT_EQ(metric("clupy_calls_missing_total"), 0) << "the calls came before push_timeout";
  EXPECT_EQ(metric("clupy_call_tickets_total"), kCalls);
  EXPECT_LT(took, seconds(25));
}

TEST_F(PushedCallsTest, AServerKilledWhileCallsArePushedToItRunsThemElsewhereEachOnce) {
  start_cluster(2);
  constexpr int kCalls = 12;
  // Four slots in all, each call 300 ms: the first server is killed while it runs some calls
  // and others are on their way to it or wait there for their bytes.
  ChildProcess program = start_program(
      "slow", {"echo", std::to_string(kCalls), std::to_string(4 * kCallBytes), "300"});
  ASSERT_TRUE(
      wait_until([&] { return server_metric("s1", "clupy_server_calls_pushed_total") >= 1; },
                 seconds(60), "a call to reach server s1"))
      << program.log();
  servers_["s1"].signal(SIGKILL);  // by its PID
  ASSERT_TRUE(servers_["s1"].wait(seconds(10)));
  server_http_.erase("s1");
  auto status = program.wait(seconds(200));
  ASSERT_TRUE(status) << program.log();
  const std::string out = program.log();
  EXPECT_EQ(line_starting(out, "ECHO "), all_good("ECHO", kCalls)) << out;
  // What s1 had was placed again (a new ticket each) and pushed again to s2.
  EXPECT_GT(metric("clupy_call_tickets_total"), kCalls);
  EXPECT_GE(metric("clupy_tasks_rerun_total"), 1);
  EXPECT_LT(metric("clupy_call_bytes_received_total"), kThreshold);
}

TEST_F(PushedCallsTest, ACallCancelledBeforeItsPushEndsCancelledOnceAndLeavesNothingBehind) {
  start_cluster(1, "data_bind: 127.0.0.1\npush_timeout: 1s\n");
  const std::string gate = dir_.file("push-gate");
  ChildProcess program = start_program("gated", {"gated", std::to_string(kCallBytes), "1"},
                                       {{"CLUPY_TEST_PUSH_GATE", gate}});
  // Placed, its ticket held back in the program: the server waits for the call.
  ASSERT_TRUE(wait_until([&] { return server_metric("s1", "clupy_server_calls_awaited") == 1; },
                         seconds(60), "the server to wait for the call"))
      << program.log();
  write_file(dir_.file("cancel"), "");
  ASSERT_TRUE(wait_until([&] { return program.log().find("GATED ") != std::string::npos; },
                         seconds(60), "the cancelled future to end"))
      << program.log();
  EXPECT_EQ(line_starting(program.log(), "CANCEL_ASKED "), "CANCEL_ASKED 1");
  const std::string outcome = line_starting(program.log(), "GATED ");
  EXPECT_EQ(outcome.rfind("GATED cancelled|", 0), 0u) << outcome;
  // The server dropped the task that waited for its call (and answered it cancelled, which
  // ended the task on the master).
  EXPECT_TRUE(wait_until([&] { return server_metric("s1", "clupy_server_calls_awaited") == 0; },
                         seconds(30), "the server to drop the waiting task"));
  EXPECT_TRUE(wait_until([&] { return metric("clupy_tasks_running") == 0; }, seconds(30),
                         "the master to see the task end"));
  // The program does not push the call of a task that ended. An absence has no condition to
  // wait for: the program looks at the gate every 20 ms, so half a second is 25 looks.
  write_file(gate, "");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(server_metric("s1", "clupy_server_calls_pushed_total"), 0);
  EXPECT_EQ(metric("clupy_pushed_call_bytes_relayed_total"), 0);
  EXPECT_EQ(metric("clupy_call_tickets_total"), 1);
  write_file(dir_.file("exit"), "");
  auto status = program.wait(seconds(60));
  ASSERT_TRUE(status);
  EXPECT_EQ(program.log().find("GATED ", program.log().find("GATED ") + 1), std::string::npos)
      << "the future ended twice:\n"
      << program.log();
}

TEST_F(PushedCallsTest, ACallThatDoesNotArriveInTimeIsPlacedAgainAndRuns) {
  start_cluster(1, "data_bind: 127.0.0.1\npush_timeout: 1s\n");
  const std::string gate = dir_.file("push-gate");
  ChildProcess program = start_program("gated", {"gated", std::to_string(kCallBytes), "0", "3"},
                                       {{"CLUPY_TEST_PUSH_GATE", gate}});
  ASSERT_TRUE(wait_until([&] { return metric("clupy_calls_missing_total") >= 1; }, seconds(60),
                         "the server to give up waiting for the call"))
      << program.log();
  EXPECT_GE(server_metric("s1", "clupy_server_calls_missing_total"), 1);
  write_file(gate, "");
  ASSERT_TRUE(wait_until([&] { return program.log().find("GATED ") != std::string::npos; },
                         seconds(60), "the future to end"))
      << program.log();
  EXPECT_EQ(line_starting(program.log(), "GATED "), "GATED value 6 size 16") << program.log();
  EXPECT_GE(metric("clupy_call_tickets_total"), 2);
  write_file(dir_.file("exit"), "");
  ASSERT_TRUE(program.wait(seconds(60)));
}

TEST_F(PushedCallsTest, ACallThatNeverArrivesFailsLostOnceWhenNoRetriesAreLeft) {
  start_cluster(1, "data_bind: 127.0.0.1\npush_timeout: 1s\n");
  ChildProcess program = start_program("gated", {"gated", std::to_string(kCallBytes), "0", "0"},
                                       {{"CLUPY_TEST_PUSH_GATE", dir_.file("never")}});
  ASSERT_TRUE(wait_until([&] { return program.log().find("GATED ") != std::string::npos; },
                         seconds(60), "the future to end"))
      << program.log();
  const std::string outcome = line_starting(program.log(), "GATED ");
  EXPECT_EQ(outcome.rfind("GATED lost|", 0), 0u) << outcome;
  EXPECT_NE(outcome.find("never reached server s1"), std::string::npos) << outcome;
  EXPECT_EQ(metric("clupy_calls_missing_total"), 1);
  EXPECT_EQ(metric("clupy_call_tickets_total"), 1);
  write_file(dir_.file("exit"), "");
  ASSERT_TRUE(program.wait(seconds(60)));
}

}  // namespace
}  // namespace clupy::test
