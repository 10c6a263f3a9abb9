// clupy::parallel end to end: real master and server processes, and a real client program
// (task_program) whose own image the servers' workers run.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <filesystem>
#include <regex>
#include <sstream>

#include "cluster_fixture.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

class ParallelTest : public ClusterFixture {
 protected:
  // Starts the task program against this cluster.
  ChildProcess start_program(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), TASK_PROGRAM);
    std::map<std::string, std::string> env = args_env_;
    env.emplace("CLUPY_MASTER_URL", master_url());
    env.emplace("CLUPY_TOKEN_FILE", token_file());
    return ChildProcess({args, env, dir_.path(), dir_.file(name + ".out")});
  }
  // More environment for the programs started after it is set.
  std::map<std::string, std::string> args_env_;
  // Runs it to completion and returns its output.
  std::string run_program(const std::string& name, std::vector<std::string> args,
                          int* exit_code = nullptr) {
    ChildProcess program = start_program(name, std::move(args));
    auto status = program.wait(std::chrono::seconds(240));
    EXPECT_TRUE(status) << name << " did not finish:\n" << program.log();
    if (exit_code && status) *exit_code = WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
    return program.log();
  }
  void start_cluster(int servers, std::vector<std::string> server_args = {"--capacity", "2"}) {
    start_master({"--registration-ttl", "3s"});
    std::set<std::string> ids;
    for (int i = 1; i <= servers; ++i) {
      start_server("s" + std::to_string(i), server_args);
      ids.insert("s" + std::to_string(i));
    }
    ASSERT_TRUE(servers_become(ids));
  }
};

TEST_F(ParallelTest, TenThousandTasksOverThreeServersMatchTheSequentialResults) {
  start_cluster(3);
  int code = -1;
  const std::string out = run_program("sequential", {"sequential", "10000"}, &code);
  EXPECT_EQ(line_starting(out, "DONE"), "DONE tasks=10000 wrong=0 callback_errors=0") << out;
  EXPECT_EQ(code, 0);
  for (const char* s : {"s1", "s2", "s3"})
    EXPECT_NE(read_file(dir_.file(std::string(s) + ".log")).find("cached"), std::string::npos)
        << s << " never fetched the program image";
}

TEST_F(ParallelTest, ExceptionSegfaultAbortExitAndTimeoutFailOnlyTheirTask) {
  start_cluster(1);
  const std::string out = run_program("failures", {"failures"});
  EXPECT_EQ(line_starting(out, "BEFORE"), "BEFORE 49") << out;
  EXPECT_EQ(line_starting(out, "AFTER"), "AFTER 64") << out;
  const std::string exception = line_starting(out, "FAILURE exception|");
  EXPECT_NE(exception.find("exception|std::invalid_argument|n must be negative, got 1|s1|"),
            std::string::npos)
      << out;
  EXPECT_NE(line_starting(out, "FAILURE segfault|").find("crash|"), std::string::npos) << out;
  EXPECT_NE(line_starting(out, "FAILURE segfault|").find("SIGSEGV"), std::string::npos) << out;
  EXPECT_NE(line_starting(out, "FAILURE abort|").find("SIGABRT"), std::string::npos) << out;
  EXPECT_NE(line_starting(out, "FAILURE exit|").find("exited with code 3"), std::string::npos)
      << out;
  EXPECT_NE(line_starting(out, "FAILURE timeout|").find("timeout|"), std::string::npos) << out;
  EXPECT_NE(line_starting(out, "FAILURE timeout|").find("300 ms"), std::string::npos) << out;
  // Every failure names its server and a task id.
  for (const char* kind : {"exception", "segfault", "abort", "exit", "timeout"}) {
    const std::string line = line_starting(out, std::string("FAILURE ") + kind + "|");
    EXPECT_NE(line.find("|s1|"), std::string::npos) << line;
    EXPECT_EQ(line.find("|s1|0|"), std::string::npos) << "task id missing: " << line;
  }
  EXPECT_NE(line_starting(out, "GET ").find("std::invalid_argument"), std::string::npos) << out;
  EXPECT_TRUE(master_.running());
  EXPECT_TRUE(servers_["s1"].running());
  EXPECT_EQ(server_ids(), std::set<std::string>{"s1"});
}

TEST_F(ParallelTest, CrashesAmongBatchedQuickTasksFailExactlyTheCrashingOnes) {
  start_cluster(1);
  const std::string out = run_program("crashmix", {"crashmix", "300", "25"});
  EXPECT_EQ(line_starting(out, "CRASHMIX"), "CRASHMIX ok=288 crashed=12 wrong=0") << out;
  EXPECT_TRUE(servers_["s1"].running());
}

TEST_F(ParallelTest, KilledServerMidRunLosesNoFuture) {
  start_cluster(3);
  ChildProcess program = start_program("long", {"long", "300", "40"});
  ASSERT_TRUE(wait_until([&] { return program.log().find("PROGRESS 1") != std::string::npos; },
                         seconds(120), "the program to make progress"));
  servers_["s2"].signal(SIGKILL);
  ASSERT_TRUE(program.wait(seconds(240))) << program.log();
  EXPECT_EQ(line_starting(program.log(), "DONE"), "DONE ok=300 failed=0 callbacks=300")
      << program.log();
}

TEST_F(ParallelTest, ServerCountTwoUsesAtMostTwoOfFourServers) {
  start_cluster(4);
  const std::string out = run_program("spread", {"spread", "2", "0", "200", "2"});
  const std::string servers = line_starting(out, "SERVERS");
  ASSERT_FALSE(servers.empty()) << out;
  const auto count = std::count(servers.begin(), servers.end(), ' ');
  EXPECT_GE(count, 1) << servers;
  EXPECT_LE(count, 2) << servers;
}

TEST_F(ParallelTest, MaxInFlightIsHonoured) {
  start_cluster(2);
  const std::string out = run_program("inflight", {"spread", "0", "3", "40", "30"});
  const std::string peak = line_starting(out, "PEAK");
  ASSERT_FALSE(peak.empty()) << out;
  EXPECT_LE(std::stoi(peak.substr(5)), 3) << out;
  EXPECT_GE(std::stoi(peak.substr(5)), 2) << "tasks did not run in parallel at all: " << out;
}

TEST_F(ParallelTest, ShortTasksDoNotQueueBehindALongOneWhileAnotherWorkerIsFree) {
  // One server with two slots: a 1.5 s task, then twelve of 50 ms. The long task's worker may
  // hold one more task before it has measured its time per task; the other worker runs the rest.
  start_cluster(1);
  const std::string out = run_program("behind-long", {"behind-long", "1500", "12", "50"});
  const std::string behind = line_starting(out, "BEHIND_LONG");
  ASSERT_FALSE(behind.empty()) << out;
  EXPECT_LE(std::stoi(behind.substr(12)), 1) << out;
}

TEST_F(ParallelTest, LambdasAggregatesMapsAndStringsRoundTrip) {
  start_cluster(1);
  int code = -1;
  const std::string out = run_program("types", {"types"}, &code);
  EXPECT_EQ(line_starting(out, "TYPES"), "TYPES ok=4") << out;
  EXPECT_EQ(code, 0);
}

TEST_F(ParallelTest, WorkerOutputReachesTheClientPrefixedWithServerAndTask) {
  start_cluster(1);
  const std::string out = run_program("output", {"output"});
  EXPECT_NE(out.find("RESULT 42"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(\(s1 task \d+\) hello from task 42 on stdout)")))
      << out;
  EXPECT_TRUE(
      std::regex_search(out, std::regex(R"(\(s1 task \d+\) warning from task 42 on stderr)")))
      << out;
}

TEST_F(ParallelTest, ATaskPrintingMuchReachesTheClientWholeAndAttributedWhileOthersRun) {
  start_cluster(1);
  const std::string out = run_program("chatty", {"chatty", "20000"});
  EXPECT_EQ(line_starting(out, "CHATTY"), "CHATTY quick_ok=200 printed=20000")
      << out.substr(0, 2000);
  // Every line arrives whole (the server's reads of the pipe cut it anywhere), once, in order,
  // with its prefix.
  std::istringstream in(out);
  std::set<std::string> owners;
  int next = 0;
  const std::regex line(R"(^\((s1 task \d+)\) chatty line (\d+) of 20000 \.+$)");
  for (std::string text; std::getline(in, text);) {
    if (text.find("chatty line") == std::string::npos) continue;
    std::smatch match;
    ASSERT_TRUE(std::regex_match(text, match, line)) << "a broken line: " << text;
    ASSERT_EQ(std::stoi(match[2]), next) << text;
    ++next;
    owners.insert(match[1]);
  }
  EXPECT_EQ(next, 20000);
  EXPECT_EQ(owners.size(), 1u) << "the output was attributed to several tasks";
}

TEST_F(ParallelTest, KilledClientFreesItsReservationsWhileAnotherIsServedFairly) {
  start_cluster(2);
  // About 30 s of work on the four slots: far longer than the second client needs when it is
  // served fairly, far shorter than if it had to wait behind the whole queue.
  ChildProcess hog = start_program("hog", {"long", "6000", "20"});
  ASSERT_TRUE(wait_until([&] { return hog.log().find("PROGRESS") != std::string::npos; },
                         seconds(120), "the first client to start running"));
  // The second client's tasks interleave with the first's queue instead of waiting behind it.
  const auto started = std::chrono::steady_clock::now();
  const std::string out = run_program("second", {"long", "20", "20"});
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(line_starting(out, "DONE"), "DONE ok=20 failed=0 callbacks=20") << out;
  EXPECT_TRUE(hog.running()) << "the first client finished first; the test proves nothing";
  EXPECT_LT(took, seconds(15))
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";

  auto reserved = [&] {
    auto s = status();
    int n = 0;
    if (s)
      for (const auto& server : s->servers) n += !server.reserved_by.empty();
    return n;
  };
  EXPECT_GT(reserved(), 0);
  hog.signal(SIGKILL);
  hog.wait(seconds(10));
  EXPECT_TRUE(
      wait_until([&] { return reserved() == 0; }, seconds(30), "the reservations to be released"));
  EXPECT_EQ(line_starting(run_program("after", {"long", "10", "1"}), "DONE"),
            "DONE ok=10 failed=0 callbacks=10");
}

TEST_F(ParallelTest, MasterRestartFailsPendingFuturesWithAClearError) {
  start_cluster(1);
  ChildProcess program = start_program("orphan", {"long", "200", "100", "0"});
  ASSERT_TRUE(wait_until([&] { return program.log().find("PROGRESS 1") != std::string::npos; },
                         seconds(120), "the program to make progress"));
  master_.signal(SIGKILL);
  ASSERT_TRUE(program.wait(seconds(60))) << program.log();
  const std::string out = program.log();
  EXPECT_NE(line_starting(out, "KIND unavailable|").find("lost the connection to the master"),
            std::string::npos)
      << out;
  EXPECT_EQ(line_starting(out, "DONE").find("DONE ok=200"), std::string::npos) << out;
}

TEST_F(ParallelTest, EmbeddedLocalClusterRunsTheExampleWithNoMaster) {
  // A private HOME: no token, so nothing about this machine's own cluster leaks in.
  std::filesystem::create_directories(dir_.file("home"));
  ChildProcess example({{PRIMES_EXAMPLE},
                        {{"HOME", dir_.file("home")}, {"CLUPY_MASTER_URL", ""}},
                        dir_.path(),
                        dir_.file("primes.out")});
  auto exit_status = example.wait(seconds(120));
  ASSERT_TRUE(exit_status) << example.log();
  const std::string out = example.log();
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << out;
  EXPECT_NE(out.find("primes(150) = 2 3 5"), std::string::npos) << out;
  EXPECT_NE(out.find("100 of 100 tasks succeeded"), std::string::npos) << out;
  EXPECT_NE(out.find("(embedded local cluster)"), std::string::npos) << out;
}

TEST_F(ParallelTest, CancelStopsARunningTaskAndDropsAQueuedOne) {
  start_cluster(1, {"--capacity", "1"});
  const std::string out = run_program("cancel", {"cancel", "0", dir_.path()});
  // The task had started (it created its marker) when it was cancelled.
  EXPECT_EQ(line_starting(out, "RUNNING"), "RUNNING before cancel=yes") << out;
  EXPECT_EQ(line_starting(out, "CANCELLED"), "CANCELLED running=cancelled queued=cancelled") << out;
  const std::string next = line_starting(out, "NEXT 81 after");
  ASSERT_FALSE(next.empty()) << out;
  EXPECT_LT(std::stoi(next.substr(14)), 15'000) << "the cancelled task kept its slot: " << out;
}

TEST_F(ParallelTest, CancelRightAfterSubmitStopsTheTaskEvenBeforeItsWorkerStartedIt) {
  start_cluster(1, {"--capacity", "1"});
  // A cancelled task left running would hold the only slot for 20 s into the next round.
  const auto started = std::chrono::steady_clock::now();
  for (int round = 0; round < 3; ++round) {
    const std::string out = run_program("cancel-early", {"cancel", "0"});
    EXPECT_EQ(line_starting(out, "CANCELLED"), "CANCELLED running=cancelled queued=cancelled")
        << out;
    const std::string next = line_starting(out, "NEXT 81 after");
    ASSERT_FALSE(next.empty()) << out;
    EXPECT_LT(std::stoi(next.substr(14)), 15'000) << "the cancelled task kept its slot: " << out;
  }
  // Each round's NEXT above proves its slot came back; this bounds the rounds together, loose
  // enough for three program starts under a sanitizer on loaded cores.
  EXPECT_LT(std::chrono::steady_clock::now() - started, seconds(45))
      << "a cancelled task kept its slot";
}

TEST_F(ParallelTest, ManySubmissionsWaitForTheWindowInsteadOfFillingTheMaster) {
  write_file(dir_.file("clupy.master.yaml"), "client_window: 20\n");
  start_cluster(1);
  ChildProcess program = start_program("flood", {"long", "400", "5"});
  std::uint64_t peak = 0;
  while (program.running()) {
    if (auto s = status()) peak = std::max(peak, s->queued_tasks + s->running_tasks);
  }
  EXPECT_EQ(line_starting(program.log(), "DONE"), "DONE ok=400 failed=0 callbacks=400")
      << program.log();
  EXPECT_GT(peak, 0u);
  EXPECT_LE(peak, 20u) << "the master held more than the client window";
}

TEST_F(ParallelTest, BurstsLargerThanAFrameAreSplitAndAnOversizedCallFailsAtOnce) {
  start_cluster(1);
  const std::string out = run_program("payload", {"payload", "96", "1"});
  EXPECT_EQ(line_starting(out, "PAYLOAD"), "PAYLOAD all=1 ok=96") << out;
  EXPECT_NE(line_starting(out, "HUGE protocol|").find("more than half of max_frame_size"),
            std::string::npos)
      << out;
}

TEST_F(ParallelTest, BigPayloadsAroundTheAttachmentThresholdComeBackByteForByte) {
  start_cluster(1);
  const std::string out = run_program("bigecho", {"bigecho"});
  EXPECT_EQ(line_starting(out, "BIGECHO"), "BIGECHO all=1 ok=56 of 56") << out;
}

TEST_F(ParallelTest, BigPayloadsTravelInlineToAndFromAnOlderClient) {
  // A client that speaks protocol 1.1 never gets attachments, and sends none.
  start_cluster(1);
  args_env_.emplace("CLUPY_TEST_PROTOCOL_MINOR", "1");
  const std::string out = run_program("bigecho-old", {"bigecho"});
  EXPECT_EQ(line_starting(out, "BIGECHO"), "BIGECHO all=1 ok=56 of 56") << out;
}

TEST_F(ParallelTest, AWorkerCrashingWithABigPayloadFailsOnlyItsTask) {
  start_cluster(1);
  const std::string out = run_program("bigcrash", {"bigcrash"});
  EXPECT_EQ(line_starting(out, "BIGCRASH"), "BIGCRASH ok=11 crashed=1") << out;
}

TEST_F(ParallelTest, ParallelWithoutInitSaysWhatToAdd) {
  start_cluster(1);
  const std::string out = run_program("no-init", {"no-init"});
  EXPECT_NE(
      out.find(
          "ERROR clupy::parallel was called before clupy::init: add `clupy::init(argc, argv);`"),
      std::string::npos)
      << out;
}

TEST_F(ParallelTest, ConfiguredButUnreachableMasterIsAnErrorNotAFallback) {
  port_ = free_loopback_port();
  write_file(token_file(), "t\n");
  ::chmod(token_file().c_str(), 0600);
  int code = -1;
  const std::string out = run_program("unreachable", {"types"}, &code);
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("cannot connect to the master at " + master_url()), std::string::npos) << out;
}

}  // namespace
}  // namespace clupy::test
