// Published services survive a restart of the master: a real master (restarted on the same
// port and data_dir), two real servers, the clupy command and real HTTP. Also what a restarted
// master does with a kept definition that is corrupt or whose image is gone.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cluster_fixture.hpp"
#include "http_client.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;
constexpr const char* kServiceKey = "restart-key-0123456789abcdef";

class ServiceRestartTest : public ClusterFixture {
 protected:
  void SetUp() override {
    start_master(master_args());
    start_server("s1");
    start_server("s2");
    ASSERT_TRUE(servers_become({"s1", "s2"}));
    write_file(dir_.file("service.key"), std::string(kServiceKey) + "\n");
  }
  std::string data_dir() const { return dir_.file("master-data"); }
  std::vector<std::string> master_args() const { return {"--data-dir", data_dir()}; }

  // Stops the master (SIGKILL: a crash; SIGTERM: a clean stop) and starts it again on the same
  // port with the same data_dir; the servers reconnect by themselves.
  void restart_master(int signal) {
    master_.signal(signal);
    ASSERT_TRUE(master_.wait(seconds(30)));
    start_master(master_args(), port_);
    ASSERT_TRUE(servers_become({"s1", "s2"}, seconds(60)));
  }

  int publish(const std::string& name, int port, std::string& output) {
    const std::string file = dir_.file(name + ".yaml");
    write_file(file, "name: " + name + "\nbinary: " + SERVICE_PROGRAM_V1 +
                         "\nentry_points: [add, version]\nport: " + std::to_string(port) +
                         "\nbind: 127.0.0.1\nreplicas: 2\nauth: {key_file: " +
                         dir_.file("service.key") + "}\n");
    return run_cli({"--publish", file, "--master-url", master_url(), "--token-file", token_file()},
                   output);
  }

  nlohmann::json services() {
    std::string output;
    const int rc = run_cli(
        {"services", "--json", "--master-url", master_url(), "--token-file", token_file()}, output);
    EXPECT_EQ(rc, 0) << output;
    const auto start = output.find('[');
    if (start == std::string::npos) return nlohmann::json::array();
    return nlohmann::json::parse(output.substr(start), nullptr, false);
  }

  static nlohmann::json find(const nlohmann::json& all, const std::string& name) {
    for (const auto& s : all)
      if (s.value("name", "") == name) return s;
    return nullptr;
  }
};

TEST_F(ServiceRestartTest, PublishedServiceAnswersAgainAfterTheMasterRestartsUntilUnpublished) {
  const int port = free_loopback_port();
  std::string output;
  ASSERT_EQ(publish("calc", port, output), 0) << output;
  HttpClient client(port, std::string("Bearer ") + kServiceKey);
  auto r = client.post("/add", "[2, 40]");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "42");
  EXPECT_TRUE(std::filesystem::exists(data_dir() + "/services/calc.kept"));

  // The master crashes: while it is down, callers are refused at once, not left waiting.
  master_.signal(SIGKILL);
  ASSERT_TRUE(master_.wait(seconds(30)));
  const int master_port = port_;
  const auto asked = std::chrono::steady_clock::now();
  r = HttpClient(port, std::string("Bearer ") + kServiceKey).post("/add", "[2, 40]");
  EXPECT_EQ(r.status, 0) << r.body;
  EXPECT_NE(r.body.find("refused"), std::string::npos) << r.body;
  EXPECT_LT(std::chrono::steady_clock::now() - asked, seconds(2));

  // Started again with the same data_dir: the same URL, the same key, the same answers.
  start_master(master_args(), master_port);
  ASSERT_TRUE(servers_become({"s1", "s2"}, seconds(60)));
  ASSERT_TRUE(wait_until([&] { return client.get("/ready").status == 200; }, seconds(90),
                         "the kept service to be ready again"))
      << master_.log();
  r = client.post("/add", "[2, 40]");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "42");
  r = client.post("/version", "[]");
  EXPECT_EQ(r.body, "1");
  EXPECT_EQ(HttpClient(port, "Bearer wrong-key-0123456789").post("/add", "[1, 1]").status, 401);
  EXPECT_NE(master_.log().find("kept from before: serving it again"), std::string::npos);
  const auto listed = find(services(), "calc");
  ASSERT_TRUE(listed.is_object()) << services().dump();
  EXPECT_EQ(listed["state"], "ready");
  EXPECT_EQ(listed["version"], 1);
  EXPECT_EQ(listed["url"], "http://127.0.0.1:" + std::to_string(port) + "/");
  // The key is never shown or logged.
  EXPECT_EQ(listed.dump().find(kServiceKey), std::string::npos);
  EXPECT_EQ(master_.log().find(kServiceKey), std::string::npos);

  // A rolling update after the restart counts on from the kept version.
  ASSERT_EQ(publish("calc", port, output), 0) << output;
  EXPECT_NE(output.find("version 2"), std::string::npos) << output;

  // Unpublished: the kept definition goes, and the next restart does not bring it back.
  ASSERT_EQ(
      run_cli({"--unpublish", "calc", "--master-url", master_url(), "--token-file", token_file()},
              output),
      0)
      << output;
  EXPECT_FALSE(std::filesystem::exists(data_dir() + "/services/calc.kept"));
  restart_master(SIGTERM);
  EXPECT_TRUE(services().empty()) << services().dump();
  EXPECT_EQ(client.get("/health").status, 0);
}

TEST_F(ServiceRestartTest, CorruptDefinitionAndMissingImageAreReportedNotFatal) {
  const int port = free_loopback_port();
  std::string output;
  ASSERT_EQ(publish("calc", port, output), 0) << output;
  master_.signal(SIGTERM);
  ASSERT_TRUE(master_.wait(seconds(30)));
  // A definition that does not parse, and calc's image deleted from the master's images.
  write_file(data_dir() + "/services/broken.kept", "this is not a kept service");
  std::size_t images = 0;
  for (const auto& image : std::filesystem::directory_iterator(data_dir() + "/images")) {
    std::filesystem::remove(image.path());
    ++images;
  }
  ASSERT_GE(images, 1u);
  start_master(master_args(), port_);
  ASSERT_TRUE(servers_become({"s1", "s2"}, seconds(60)));

  const auto all = services();
  const auto broken = find(all, "broken");
  ASSERT_TRUE(broken.is_object()) << all.dump();
  EXPECT_EQ(broken["state"], "failed");
  EXPECT_NE(broken["error"].get<std::string>().find("is corrupt"), std::string::npos) << broken;
  const auto calc = find(all, "calc");
  ASSERT_TRUE(calc.is_object()) << all.dump();
  EXPECT_EQ(calc["state"], "failed");
  EXPECT_NE(calc["error"].get<std::string>().find("program image"), std::string::npos) << calc;
  EXPECT_NE(master_.log().find("kept service broken cannot be served"), std::string::npos);
  EXPECT_NE(master_.log().find("kept service calc cannot be served"), std::string::npos);
  EXPECT_TRUE(master_.running());
  EXPECT_EQ(HttpClient(port).get("/health").status, 0) << "a service without its image is served";

  // The table of `clupy services` shows the reason too.
  ASSERT_EQ(
      run_cli({"services", "--master-url", master_url(), "--token-file", token_file()}, output), 0)
      << output;
  EXPECT_NE(output.find("error: "), std::string::npos) << output;

  // Unpublishing a service that is not served removes its kept definition.
  ASSERT_EQ(
      run_cli({"--unpublish", "broken", "--master-url", master_url(), "--token-file", token_file()},
              output),
      0)
      << output;
  EXPECT_FALSE(std::filesystem::exists(data_dir() + "/services/broken.kept"));
  // Publishing calc again replaces the unusable definition and serves it.
  ASSERT_EQ(publish("calc", port, output), 0) << output;
  EXPECT_EQ(find(services(), "calc")["state"], "ready");
  EXPECT_EQ(find(services(), "broken"), nullptr);
}

}  // namespace
}  // namespace clupy::test
