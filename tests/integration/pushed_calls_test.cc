// Pushed calls end to end (docs/protocol.md#pushed-calls): a call of at least the master's
// push_threshold goes from the program straight to the server the master placed its task on,
// and a held outcome of it comes back on the same connection. Real master and server processes
// and the client program held_program; the daemons' /metrics prove which path the bytes took.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "clupy/errors.hpp"
#include "held_fixture.hpp"
#include "hostile_peer.hpp"

namespace clupy::test {
namespace {

constexpr long kCallBytes = 1 << 20;

class PushedCallsTest : public HeldResultsTest {
 protected:
  // The line scenario_echo prints when all `n` values were right.
  static std::string all_good(const std::string& label, int n) {
    return label + " ok " + std::to_string(n) + " of " + std::to_string(n);
  }
  // The sum of a labelled family's samples on server `id` ("name{...} value" lines; 0: none),
  // such as clupy_server_tasks_run_total, which has one sample per program image.
  long long server_samples_total(const std::string& id, const std::string& name) {
    std::istringstream page(
        tcp_exchange(server_http_.at(id), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", seconds(10)));
    long long total = 0;
    for (std::string line; std::getline(page, line);)
      if (line.rfind(name + "{", 0) == 0) total += std::stoll(line.substr(line.rfind(' ') + 1));
    return total;
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

// ---- Mixed versions (docs/protocol.md#handshake, protocol 1.5): a pushed task is placed only
// on servers of 1.5 or later; an older server still runs the calls that travel in SubmitTasks ----

TEST_F(PushedCallsTest, LargeCallsRunOnlyOnTheServerOfProtocol15AndSmallOnesOnBoth) {
  write_file(dir_.file("clupy.server.yaml"), "data_bind: 127.0.0.1\n");
  http_port_ = free_loopback_port();
  start_master({"--registration-ttl", "3s", "--http-port", std::to_string(http_port_)});
  for (const std::string id : {"new", "old"}) {
    server_http_[id] = free_loopback_port();
    std::map<std::string, std::string> env;
    if (id == "old") env["CLUPY_TEST_PROTOCOL_MINOR"] = "4";
    start_server(id, {"--capacity", "2", "--http-port", std::to_string(server_http_[id])}, env);
  }
  ASSERT_TRUE(servers_become({"new", "old"}));
  auto registry = status();
  ASSERT_TRUE(registry);
  for (const auto& server : registry->servers)
    EXPECT_NE(server.version.find(server.server_id == "old" ? "(protocol 1.4)" : "(protocol 1.5)"),
              std::string::npos)
        << server.server_id << ": " << server.version;

  // Eight slow large calls against four slots: the old server's two stay free while six wait
  // for the new one's, and still none is placed there.
  constexpr int kCalls = 8;
  std::string out =
      run_program("large", {"echo", std::to_string(kCalls), std::to_string(kCallBytes), "300"});
  EXPECT_EQ(line_starting(out, "ECHO "), all_good("ECHO", kCalls)) << out;
  EXPECT_EQ(metric("clupy_call_tickets_total"), kCalls);
  EXPECT_GT(metric("clupy_call_bytes_pushed_total"), static_cast<long long>(kCalls) * kCallBytes);
  EXPECT_LT(metric("clupy_call_bytes_received_total"), kThreshold);
  EXPECT_EQ(server_metric("new", "clupy_server_calls_pushed_total"), kCalls);
  EXPECT_EQ(server_samples_total("new", "clupy_server_tasks_run_total"), kCalls);
  EXPECT_EQ(server_metric("old", "clupy_server_calls_pushed_total"), 0);
  EXPECT_EQ(server_metric("old", "clupy_server_calls_pushed_via_master_total"), 0);
  EXPECT_EQ(server_samples_total("old", "clupy_server_tasks_run_total"), 0);

  // Eight slow small calls go in SubmitTasks: no tickets, and the old server takes its share.
  out = run_program("small", {"echo", std::to_string(kCalls), "1000", "300"});
  EXPECT_EQ(line_starting(out, "ECHO "), all_good("ECHO", kCalls)) << out;
  EXPECT_EQ(metric("clupy_call_tickets_total"), kCalls) << "no small call was pushed";
  EXPECT_GE(metric("clupy_call_bytes_received_total"), kCalls * 1000);
  EXPECT_GE(server_samples_total("old", "clupy_server_tasks_run_total"), 1);
  EXPECT_EQ(server_samples_total("new", "clupy_server_tasks_run_total") +
                server_samples_total("old", "clupy_server_tasks_run_total"),
            2 * kCalls);
  EXPECT_EQ(server_metric("old", "clupy_server_calls_pushed_total"), 0);
}

TEST_F(PushedCallsTest, WithOnlyOlderServersAPushThresholdOfZeroSendsLargeCallsThroughTheMaster) {
  write_file(dir_.file("clupy.master.yaml"), "push_threshold: 0\n");
  write_file(dir_.file("clupy.server.yaml"), "data_bind: 127.0.0.1\n");
  http_port_ = free_loopback_port();
  start_master({"--registration-ttl", "3s", "--http-port", std::to_string(http_port_)});
  server_http_["old"] = free_loopback_port();
  start_server("old", {"--capacity", "2", "--http-port", std::to_string(server_http_["old"])},
               {{"CLUPY_TEST_PROTOCOL_MINOR", "4"}});
  ASSERT_TRUE(servers_become({"old"}));
  constexpr int kCalls = 4;
  const std::string out =
      run_program("through-master", {"echo", std::to_string(kCalls), std::to_string(kCallBytes)});
  EXPECT_EQ(line_starting(out, "ECHO "), all_good("ECHO", kCalls)) << out;
  // Every call came in SubmitTasks: the master offered no pushing and placed no ticket.
  EXPECT_EQ(metric("clupy_call_tickets_total"), 0);
  EXPECT_EQ(metric("clupy_call_bytes_pushed_total"), 0);
  EXPECT_GE(metric("clupy_call_bytes_received_total"), static_cast<long long>(kCalls) * kCallBytes);
  EXPECT_EQ(server_metric("old", "clupy_server_calls_pushed_total"), 0);
  EXPECT_EQ(server_metric("old", "clupy_server_calls_pushed_via_master_total"), 0);
  EXPECT_EQ(server_samples_total("old", "clupy_server_tasks_run_total"), kCalls);
}

// ---- A server's data port against hostile peers (docs/protocol.md, "Security"): a HostilePeer
// on the port the server announces; each case checks the answer, the close, and the server's
// log or metric that shows which path ran. Each test ends with a real job on the same server ----

class DataPortHostileTest : public PushedCallsTest {
 protected:
  static constexpr auto kPushTimeout = std::chrono::milliseconds(1000);

  // One server, s1, whose data port listens on data_port_ (a fixed free port, so that the test
  // knows it; the server announces it to the master as any other).
  void start_one_server(const std::string& server_yaml = "") {
    data_port_ = free_loopback_port();
    start_cluster(1, "data_bind: 127.0.0.1\ndata_port: " + std::to_string(data_port_) +
                         "\npush_timeout: " + std::to_string(kPushTimeout.count()) + "ms\n" +
                         server_yaml);
  }
  std::string token() { return read_token(token_file()); }
  std::unique_ptr<HostilePeer> authenticated_peer(const std::string& name) {
    auto peer = std::make_unique<HostilePeer>(data_port_);
    EXPECT_TRUE(peer->connected());
    EXPECT_TRUE(peer->handshake(token(), wire::ROLE_CLIENT, name));
    return peer;
  }
  // A line of s1's log holds `first` and, after it, `then`.
  testing::AssertionResult server_logged(const std::string& first, const std::string& then) {
    return wait_until(
        [&] {
          std::istringstream log(read_file(dir_.file("s1.log")));
          for (std::string line; std::getline(log, line);) {
            const auto at = line.find(first);
            if (at != std::string::npos && line.find(then, at + first.size()) != std::string::npos)
              return true;
          }
          return false;
        },
        seconds(20), "server s1 to log '" + first + "' ... '" + then + "'");
  }
  static std::string frame_header(std::uint32_t body_length) {
    const std::uint32_t word = htonl(body_length);
    return std::string(reinterpret_cast<const char*>(&word), sizeof word);
  }
  // The server lives, nothing a hostile peer sent ran, and a real job's large calls still go
  // through this data port (pushed there, values pushed back) and come out right.
  void expect_server_still_runs_a_real_job() {
    ASSERT_TRUE(servers_["s1"].running()) << servers_["s1"].log();
    EXPECT_EQ(server_samples_total("s1", "clupy_server_tasks_run_total"), 0);
    const long long pushed_before = server_metric("s1", "clupy_server_calls_pushed_total");
    constexpr int kCalls = 4;
    const std::string out =
        run_program("real-job", {"echo", std::to_string(kCalls), std::to_string(kCallBytes)});
    EXPECT_EQ(line_starting(out, "ECHO "), all_good("ECHO", kCalls)) << out;
    EXPECT_EQ(server_metric("s1", "clupy_server_calls_pushed_total"), pushed_before + kCalls);
    EXPECT_EQ(server_metric("s1", "clupy_server_results_pushed_total"), kCalls / 2);
    EXPECT_EQ(server_samples_total("s1", "clupy_server_tasks_run_total"), kCalls);
    EXPECT_TRUE(servers_["s1"].running());
  }
  int data_port_ = 0;
};

TEST_F(DataPortHostileTest, PeersThatFailTheHandshakeAreRefusedAndClosed) {
  start_one_server();
  {  // (a) the wrong cluster token
    HostilePeer peer(data_port_);
    std::string refusal;
    EXPECT_FALSE(peer.handshake(std::string(64, '0'), wire::ROLE_CLIENT, "wrong-token", &refusal));
    EXPECT_EQ(refusal, "authentication failed: the cluster token does not match the server's");
    EXPECT_TRUE(peer.closed_by_daemon_within(seconds(10)));
    EXPECT_TRUE(server_logged("data port: closing connection from",
                              ": authentication failed for wrong-token (wrong cluster token)"));
  }
  {  // (b) a frame whose body is not an envelope (a truncated varint)
    HostilePeer peer(data_port_);
    peer.send_bytes(frame_header(8) + std::string(8, '\xff'));
    EXPECT_TRUE(peer.closed_by_daemon_within(seconds(10)));
    EXPECT_TRUE(server_logged("data port: closing connection from",
                              ": unparsable frame (not a CluPy envelope)"));
  }
  {  // (b) a frame over the 64 KiB allowed before the handshake: refused from its header
    HostilePeer peer(data_port_);
    peer.send_bytes(frame_header(1u << 20));
    EXPECT_TRUE(peer.closed_by_daemon_within(seconds(10)));
    EXPECT_TRUE(server_logged("data port: closing connection from",
                              ": oversized frame: 1048576 bytes announced, limit 65536"));
  }
  {  // a request in place of Hello: refused, never answered
    HostilePeer peer(data_port_);
    wire::Envelope fetch;
    fetch.set_request_id(5);
    fetch.mutable_fetch_result()->set_result_id(1);
    peer.send(fetch);
    auto answer = peer.receive(seconds(10));
    ASSERT_TRUE(answer);
    ASSERT_TRUE(answer->has_refused()) << answer->DebugString();
    EXPECT_EQ(answer->refused().reason(), wire::Refused::PROTOCOL_ERROR);
    EXPECT_EQ(answer->refused().message(), "expected Hello as the first frame");
    EXPECT_TRUE(peer.closed_by_daemon_within(seconds(10)));
    EXPECT_TRUE(server_logged("data port: closing connection from", ": first frame was not Hello"));
  }
  expect_server_still_runs_a_real_job();
}

TEST_F(DataPortHostileTest, PeersThatNeverFinishTheHandshakeAreBoundedInNumberAndTime) {
  start_one_server("handshake_timeout: 1s\nmax_pending_connections: 3\n");
  std::vector<std::unique_ptr<HostilePeer>> silent;
  for (int i = 0; i < 3; ++i) {
    silent.push_back(std::make_unique<HostilePeer>(data_port_));
    ASSERT_TRUE(silent.back()->connected());
  }
  // A fourth, while three are in their handshake: closed on accept, counted, logged.
  HostilePeer fourth(data_port_);
  EXPECT_TRUE(fourth.closed_by_daemon_within(seconds(5)));
  EXPECT_EQ(server_metric("s1", "clupy_server_data_connections_refused_total"), 1);
  EXPECT_TRUE(server_logged("data port: 3 connections are in their handshake",
                            "refusing new connections until some finish"));
  // The silent three are closed at handshake_timeout (1 s, not the default 10), which frees
  // their places.
  for (auto& peer : silent) EXPECT_TRUE(peer->closed_by_daemon_within(seconds(5)));
  auto peer = authenticated_peer("after-the-silent-ones");
  EXPECT_EQ(server_metric("s1", "clupy_server_data_connections_refused_total"), 1);
  expect_server_still_runs_a_real_job();
}

TEST_F(DataPortHostileTest, AuthenticatedPeersSendingWhatTheDataPortDoesNotServeAreClosed) {
  start_one_server();
  {  // (c) an assignment, as if from the master
    auto peer = authenticated_peer("fake-master");
    wire::Envelope assign;
    assign.set_request_id(11);
    auto* task = assign.mutable_assign_tasks()->add_tasks();
    task->set_task_id(std::uint64_t{1} << 32);
    task->set_call("not a call");
    peer->send(assign);
    auto answer = peer->receive(seconds(10));
    ASSERT_TRUE(answer);
    ASSERT_TRUE(answer->has_error()) << answer->DebugString();
    EXPECT_EQ(answer->request_id(), 11u);
    EXPECT_EQ(answer->error().message(), "a data port takes FetchResult and PushedCall only");
    EXPECT_TRUE(peer->closed_by_daemon_within(seconds(10)));
    EXPECT_TRUE(server_logged("data port: closing connection from",
                              ": it sent assign_tasks, which a data port does not serve"));
  }
  {  // (c) results, as if from another server
    auto peer = authenticated_peer("fake-server");
    wire::Envelope results;
    auto* result = results.mutable_task_results()->add_results();
    result->set_task_id(std::uint64_t{1} << 32);
    result->set_outcome("forged");
    peer->send(results);
    auto answer = peer->receive(seconds(10));
    ASSERT_TRUE(answer && answer->has_error());
    EXPECT_TRUE(peer->closed_by_daemon_within(seconds(10)));
    EXPECT_TRUE(server_logged("data port: closing connection from",
                              ": it sent task_results, which a data port does not serve"));
  }
  {  // (b) after the handshake: a frame that does not parse
    auto peer = authenticated_peer("garbage");
    peer->send_bytes(frame_header(8) + std::string(8, '\xff'));
    EXPECT_TRUE(peer->closed_by_daemon_within(seconds(10)));
    EXPECT_TRUE(server_logged("data port: connection from",
                              " closed: unparsable frame (not a CluPy envelope)"));
  }
  {  // (b) after the handshake: a frame over max_frame_size, refused from its header
    auto peer = authenticated_peer("oversized");
    peer->send_bytes(frame_header(0x7fff'ffffu));
    EXPECT_TRUE(peer->closed_by_daemon_within(seconds(10)));
    EXPECT_TRUE(server_logged("data port: connection from",
                              " closed: oversized frame: 2147483647 bytes announced"));
  }
  EXPECT_EQ(metric("clupy_tasks_running"), 0);
  expect_server_still_runs_a_real_job();
}

TEST_F(DataPortHostileTest, UnknownResultIdsAreAnsweredLostAndUnknownTicketsRunNothing) {
  start_one_server();
  auto peer = authenticated_peer("prober");
  // (d) a result this server does not hold: answered at once, kLost, on a connection that stays
  // open for the next request.
  for (const std::uint64_t id : {std::uint64_t{987654321}, std::uint64_t{0}}) {
    wire::Envelope fetch;
    fetch.set_request_id(100 + id);
    fetch.mutable_fetch_result()->set_result_id(id);
    peer->send(fetch);
    auto answer = peer->receive(seconds(10));
    ASSERT_TRUE(answer) << "no answer to a fetch of result " << id;
    ASSERT_TRUE(answer->has_result_bytes()) << answer->DebugString();
    EXPECT_EQ(answer->request_id(), 100 + id);
    EXPECT_TRUE(answer->result_bytes().outcome().empty());
    EXPECT_EQ(answer->result_bytes().failure().kind(),
              static_cast<std::uint32_t>(FailureKind::kLost));
    EXPECT_EQ(answer->result_bytes().failure().message(),
              "result " + std::to_string(id) + " is not held here (freed)");
  }
  EXPECT_EQ(server_metric("s1", "clupy_server_result_bytes_served_total"), 0);

  // (e) a call under a ticket no task placed here has: kept as an early call (it may precede
  // its assignment) for push_timeout, then dropped and counted; it never runs.
  constexpr std::size_t kStrayCallBytes = 100'000;
  wire::Envelope push;
  push.mutable_pushed_call()->set_ticket(std::uint64_t{1} << 60);
  push.mutable_pushed_call()->set_call(std::string(kStrayCallBytes, 'c'));
  const auto pushed_at = std::chrono::steady_clock::now();
  peer->send(push);
  ASSERT_TRUE(
      wait_until([&] { return server_metric("s1", "clupy_server_calls_pushed_total") == 1; },
                 seconds(10), "the server to take the stray call"));
  EXPECT_EQ(server_metric("s1", "clupy_server_call_bytes_pushed_total"),
            static_cast<long long>(kStrayCallBytes));
  ASSERT_TRUE(wait_until(
      [&] { return server_metric("s1", "clupy_server_pushed_calls_unmatched_total") == 1; },
      seconds(10), "the server to drop the stray call"));
  const auto kept_for = std::chrono::steady_clock::now() - pushed_at;
  EXPECT_GE(kept_for, kPushTimeout);
  EXPECT_LT(kept_for, kPushTimeout + seconds(5));
  EXPECT_EQ(server_metric("s1", "clupy_server_calls_awaited"), 0);
  EXPECT_EQ(server_metric("s1", "clupy_server_calls_missing_total"), 0);
  EXPECT_EQ(metric("clupy_tasks_running"), 0);
  // The connection is still served after both.
  wire::Envelope again;
  again.set_request_id(7);
  again.mutable_fetch_result()->set_result_id(3);
  peer->send(again);
  auto answer = peer->receive(seconds(10));
  ASSERT_TRUE(answer && answer->has_result_bytes());
  EXPECT_EQ(answer->request_id(), 7u);
  expect_server_still_runs_a_real_job();
  EXPECT_EQ(server_metric("s1", "clupy_server_pushed_calls_unmatched_total"), 1)
      << "every call of the real job found its task";
}

}  // namespace
}  // namespace clupy::test
