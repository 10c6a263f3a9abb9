// clupy::progress in a real program against a real cluster: through a pseudo-terminal (`script`)
// it redraws a bar per function; through a pipe it writes plain lines.
#include <regex>

#include "cluster_fixture.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

class ProgressClusterTest : public ClusterFixture {
 protected:
  void SetUp() override {
    start_master();
    start_server("s1", {"--capacity", "2"});
    ASSERT_TRUE(servers_become({"s1"}));
  }
  // Runs `command` with sh, the cluster in its environment; returns what it wrote.
  std::string run_shell(const std::string& name, const std::string& command) {
    ChildProcess child({{"/bin/sh", "-c", command},
                        {{"CLUPY_MASTER_URL", master_url()}, {"CLUPY_TOKEN_FILE", token_file()}},
                        dir_.path(),
                        dir_.file(name + ".out")});
    EXPECT_TRUE(child.wait(seconds(120))) << name << " did not finish";
    return child.log();
  }
};

TEST_F(ProgressClusterTest, OnATerminalEachFunctionGetsABar) {
  const std::string out = run_shell(
      "pty", std::string("/usr/bin/script -qec '") + TASK_PROGRAM + " progress 20 100' /dev/null");
  EXPECT_NE(out.find("PROGRESS_DONE tasks=40 failed=5"), std::string::npos) << out;
  EXPECT_NE(out.find("\x1b[3A"), std::string::npos) << "two functions and a total: " << out;
  // The last frame: both functions complete, the failures with the one that threw.
  const std::regex sleeps_done(R"(\[#{24}\] 20/20 100% [\d.]+/s in [\d.]+s\r?\n)");
  const std::regex throws_done(R"(\[#{24}\] 20/20 100% [\d.]+/s in [\d.]+s, 5 failed)");
  const std::regex total_done(R"(all +\[#{24}\] 40/40 100% [\d.]+/s in [\d.]+s, 5 failed)");
  EXPECT_TRUE(std::regex_search(out, sleeps_done)) << out;
  EXPECT_TRUE(std::regex_search(out, throws_done)) << out;
  EXPECT_TRUE(std::regex_search(out, total_done)) << out;
  // Frames while it ran: a partial bar with a rate and an ETA.
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(\[#*\.+\] \d+/20 +\d+% [\d.]+/s ETA )"))) << out;
}

TEST_F(ProgressClusterTest, IntoAPipeItWritesLines) {
  const std::string out = run_shell("pipe", std::string(TASK_PROGRAM) + " progress 20 100 | cat");
  EXPECT_NE(out.find("PROGRESS_DONE tasks=40 failed=5"), std::string::npos) << out;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(
      out, std::regex(R"(\[progress\] all: 40/40 100%, [\d.]+/s in [\d.]+s, 5 failed\n)")))
      << out;
  EXPECT_TRUE(
      std::regex_search(out, std::regex(R"(\[progress\] .+: 20/20 100%, [\d.]+/s in [\d.]+s\n)")))
      << out;
}

TEST_F(ProgressClusterTest, QuietWithTheEnvironmentVariable) {
  const std::string out = run_shell(
      "quiet", std::string("CLUPY_PROGRESS=off ") + TASK_PROGRAM + " progress 8 10 | cat");
  EXPECT_NE(out.find("PROGRESS_DONE tasks=16 failed=2"), std::string::npos) << out;
  EXPECT_EQ(out.find("[progress]"), std::string::npos) << out;
}

}  // namespace
}  // namespace clupy::test
