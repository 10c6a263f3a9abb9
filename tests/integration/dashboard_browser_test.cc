// The dashboard in a real browser: Debian's chromium, headless, driven by playwright-core
// (tests/browser/dashboard_browser.cjs) while a real cluster runs tasks. The page must load
// without a console error, show the registered server, a completed count that moves, a failed
// task with its message and output; the screenshot is kept as an artifact
// (<build>/artifacts/dashboard.png).
#include <sys/wait.h>

#include <filesystem>

#include "cluster_fixture.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

class DashboardBrowserTest : public ClusterFixture {};

TEST_F(DashboardBrowserTest, ShowsServersMovingCountsAndAFailedTaskWithItsOutput) {
  const char* chromium_env = std::getenv("CLUPY_CHROMIUM");
  const std::string chromium = chromium_env ? chromium_env : "/usr/bin/chromium";
  const char* npm_env = std::getenv("CLUPY_NPM_CACHE");
  const std::string modules =
      std::string(npm_env ? npm_env : "/var/cache/clupy-npm") + "/node_modules";
  const char* node_env = std::getenv("CLUPY_NODE");
  const std::string node = node_env ? node_env : "/usr/bin/node";
  ASSERT_TRUE(std::filesystem::exists(node)) << node << " is missing: run tools/install-deps.sh";
  ASSERT_TRUE(std::filesystem::exists(chromium))
      << chromium << " is missing: run tools/install-deps.sh (Debian's chromium)";
  ASSERT_TRUE(std::filesystem::exists(modules + "/playwright-core"))
      << "playwright-core is missing from " << modules << ": run tools/install-deps.sh";

  // http_auth: token, so that loopback gives the browser nothing without the token.
  const int http = free_loopback_port();
  write_file(dir_.file("master.yaml"), "http_auth: token\n");
  start_master({"--config", dir_.file("master.yaml"), "--http-port", std::to_string(http)});
  start_server("browser-s1", {"--capacity", "2", "--label", "zone=blue"});
  ASSERT_TRUE(servers_become({"browser-s1"}));
  std::string token = read_file(token_file());
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();

  // Tasks run while the browser watches: 150 tasks of 150 ms on 2 slots take about 12 s; the
  // failing ones come last.
  ChildProcess program({{DASHBOARD_PROGRAM, "work", "150", "150", "2"},
                        {{"CLUPY_MASTER_URL", master_url()}, {"CLUPY_TOKEN_FILE", token_file()}},
                        dir_.path(),
                        dir_.file("program.out")});

  std::filesystem::create_directories(ARTIFACT_DIR);
  const std::string screenshot = std::string(ARTIFACT_DIR) + "/dashboard.png";
  std::filesystem::remove(screenshot);
  ChildProcess browser({{node, BROWSER_SCRIPT, "http://127.0.0.1:" + std::to_string(http), token,
                         "browser-s1", screenshot},
                        {{"NODE_PATH", modules}, {"CLUPY_CHROMIUM", chromium}},
                        dir_.path(),
                        dir_.file("browser.out")});
  const auto status = browser.wait(seconds(180));
  const std::string said = browser.log();
  ASSERT_TRUE(status) << "the browser script did not finish:\n" << said;
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << said;
  EXPECT_NE(said.find("OK server_state=connected"), std::string::npos) << said;
  EXPECT_NE(said.find("dashboard boom"), std::string::npos) << said;
  EXPECT_NE(said.find("is about to fail"), std::string::npos) << said;
  EXPECT_GT(std::filesystem::file_size(screenshot), 10'000u);
  std::printf("browser: %s\nscreenshot: %s\n", said.c_str(), screenshot.c_str());
  ASSERT_TRUE(program.wait(seconds(120))) << "the client program did not finish";
  EXPECT_NE(program.log().find("DONE ok=150 failed=2"), std::string::npos) << program.log();
}

}  // namespace
}  // namespace clupy::test
