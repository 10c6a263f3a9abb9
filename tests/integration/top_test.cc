// `clupy top` against a real cluster: --once prints one frame whose figures follow the tasks
// that run; through a pseudo-terminal it redraws in place.
#include <filesystem>
#include <regex>

#include "cluster_fixture.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

class TopTest : public ClusterFixture {};

TEST_F(TopTest, OneFrameShowsServersSlotsAndTheTasksThatRun) {
  start_master({"--registration-ttl", "3s"});
  start_server("s1", {"--capacity", "2", "--label", "zone=a"});
  start_server("s2", {"--capacity", "1"});
  ASSERT_TRUE(servers_become({"s1", "s2"}));
  const std::vector<std::string> top = {"top",        "--once",       "--master-url",
                                        master_url(), "--token-file", token_file()};
  std::string out;
  ASSERT_EQ(run_cli(top, out), 0) << out;
  EXPECT_NE(out.find("clupy top - master " + master_url()), std::string::npos) << out;
  EXPECT_NE(out.find("servers 2 up, 0 unreachable   slots 3, busy 0"), std::string::npos) << out;
  EXPECT_NE(out.find("tasks   0 queued, 0 running   clients 0"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(\ns1 +\S+/\d+ +0/2 +\[\.+\] .* up .*zone=a)")))
      << out;
  EXPECT_EQ(out.find("\x1b["), std::string::npos) << "--once draws no escape codes";

  // Tasks of 4 s on three slots (long enough for slow sanitizer builds to catch a frame): a
  // frame shows every slot busy and the client.
  ChildProcess program({{TASK_PROGRAM, "long", "6", "4000"},
                        {{"CLUPY_MASTER_URL", master_url()}, {"CLUPY_TOKEN_FILE", token_file()}},
                        dir_.path(),
                        dir_.file("long.out")});
  const std::regex tasks_line(R"(tasks +\d+ queued, (\d+) running   clients 1)");
  std::string busy_frame;
  EXPECT_TRUE(wait_until(
      [&] {
        if (run_cli(top, out) != 0) return false;
        busy_frame = out;
        std::smatch m;
        return out.find("slots 3, busy 3") != std::string::npos &&
               std::regex_search(out, m, tasks_line) && std::stoi(m[1]) >= 3;
      },
      seconds(60), "a frame with every slot busy"))
      << busy_frame;
  EXPECT_TRUE(std::regex_search(busy_frame, std::regex(R"(\ns1 +\S+ +2/2 +\[#+\])"))) << busy_frame;
  program.kill();  // what was to be seen was seen
}

TEST_F(TopTest, OnATerminalItRedrawsInPlace) {
  start_master();
  start_server("s1", {"--capacity", "1"});
  ASSERT_TRUE(servers_become({"s1"}));
  // `script` gives top a pseudo-terminal; it stops after three frames.
  std::string out;
  const std::string command = std::string(CLUPY_BINARY) +
                              " top --interval 100ms --frames 3 --master-url " + master_url() +
                              " --token-file " + token_file();
  std::vector<std::string> args = {"/usr/bin/script", "-qec", command, "/dev/null"};
  const std::string log = dir_.file("script.log");
  ChildProcess script({args, {}, dir_.path(), log});
  ASSERT_TRUE(script.wait(seconds(30)));
  out = read_file(log);
  std::size_t frames = 0;
  for (auto at = out.find("\x1b[H\x1b[2J"); at != std::string::npos;
       at = out.find("\x1b[H\x1b[2J", at + 1))
    ++frames;
  EXPECT_EQ(frames, 3u) << out;
  EXPECT_NE(out.find("s1"), std::string::npos) << out;
  EXPECT_NE(out.find("\x1b[?25h"), std::string::npos) << "the cursor is shown again at the end";
}

}  // namespace
}  // namespace clupy::test
