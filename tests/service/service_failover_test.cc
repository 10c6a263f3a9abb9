// A published service survives a failover to a standby master: a real ZooKeeper, a real
// redis-server as the store both masters reach, two `clupy --master` candidates with their own
// data_dirs on this host, a server that follows the zk:// URL, the clupy command and real HTTP.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cluster_fixture.hpp"
#include "http_client.hpp"
#include "redis_server.hpp"
#include "zk_server.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

class ServiceFailoverTest : public ClusterFixture {
 protected:
  void SetUp() override {
    zk_.start();
    ASSERT_TRUE(zk_.wait_ready(seconds(60))) << zk_.log();
    write_file(token_file(), "service-failover-token\n");
    ::chmod(token_file().c_str(), 0600);
  }

  ChildProcess start_candidate(const std::string& name) {
    const std::string dir = dir_.file(name);
    std::filesystem::create_directories(dir);
    write_file(
        dir + "/clupy.master.yaml",
        "bind: 127.0.0.1\nport: 0\nport_file: " + dir + "/port\ntoken_file: " + token_file() +
            "\ndata_dir: " + dir + "/data\ncoordination:\n  connect: " + zk_.hosts() +
            "/service-failover\n  session_timeout: 3s\nstore:\n  redis: " + redis_.url() + "\n");
    return ChildProcess(
        {{CLUPY_BINARY, "--master", "--log-level", "debug"}, {}, dir, dir + "/master.log"});
  }
  std::string log_of(const std::string& name) { return read_file(dir_.file(name + "/master.log")); }
  bool logged(const std::string& name, const std::string& text) {
    return log_of(name).find(text) != std::string::npos;
  }
  std::string url_of(const std::string& name) {
    const std::string port = read_file(dir_.file(name + "/port"));
    return "clupy://127.0.0.1:" + port.substr(0, port.find('\n'));
  }
  std::string zk_url() const { return "zk://" + zk_.hosts() + "/service-failover"; }
  int cli(std::vector<std::string> args, const std::string& master, std::string& output) {
    args.insert(args.end(), {"--master-url", master, "--token-file", token_file()});
    return run_cli(args, output);
  }

  ZkServer zk_;
  RedisServer redis_;
};

TEST_F(ServiceFailoverTest, ServiceAnswersOnTheNewMastersFrontAfterTheLeaderIsKilled) {
  ChildProcess a = start_candidate("a");
  ASSERT_TRUE(wait_until([&] { return logged("a", "elected master"); }, seconds(60),
                         "the first master to be elected"))
      << log_of("a");
  ChildProcess b = start_candidate("b");
  ASSERT_TRUE(wait_until([&] { return logged("b", "standby master: waiting"); }, seconds(60),
                         "the second to wait"));
  ChildProcess server({{CLUPY_BINARY, "--serve", "--master-url", zk_url(), "--token-file",
                        token_file(), "--server-id", "follower", "--registration-interval", "200ms",
                        "--failure-retry-interval", "200ms", "--log-level", "debug"},
                       {},
                       dir_.path(),
                       dir_.file("follower.log")});
  const int port = free_loopback_port();
  const std::string file = dir_.file("calc.yaml");
  write_file(file, std::string("name: calc\nbinary: ") + SERVICE_PROGRAM_V1 +
                       "\nentry_points: [add, version]\nport: " + std::to_string(port) +
                       "\nbind: 127.0.0.1\nauth: token\n");
  std::string output;
  // Publishing waits for a connected server: retried until the follower has registered.
  ASSERT_TRUE(wait_until(
      [&] {
        return cli({"--publish", file}, url_of("a"), output) == 0;
      },
      seconds(60), "the publish on the elected master to succeed"))
      << output << log_of("a");
  HttpClient client(port, "Bearer service-failover-token");
  auto r = client.post("/add", "[2, 40]");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "42");
  // The definition reached ZooKeeper and the image the store before the leader dies.
  ASSERT_TRUE(wait_until([&] { return logged("a", "definition kept at ZooKeeper"); }, seconds(30),
                         "the definition to be kept in ZooKeeper"))
      << log_of("a");

  a.signal(SIGKILL);
  a.wait(seconds(10));
  ASSERT_TRUE(wait_until([&] { return logged("b", "elected master"); }, seconds(60),
                         "the standby to take over"))
      << log_of("b");
  // b's data_dir never saw the publish: the image came from the store.
  ASSERT_TRUE(wait_until([&] { return client.get("/ready").status == 200; }, seconds(90),
                         "the service to be ready on the new master's front"))
      << log_of("b") << read_file(dir_.file("follower.log"));
  EXPECT_TRUE(logged("b", "fetched program image")) << log_of("b");
  EXPECT_TRUE(logged("b", "kept from before: serving it again")) << log_of("b");
  r = client.post("/add", "[2, 40]");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "42");

  // Unpublished on the new master: removed from ZooKeeper too, so no later leader serves it.
  ASSERT_EQ(cli({"--unpublish", "calc"}, url_of("b"), output), 0) << output;
  ChildProcess c = start_candidate("c");
  ASSERT_TRUE(wait_until([&] { return logged("c", "standby master: waiting"); }, seconds(60),
                         "a third master to wait"));
  b.signal(SIGTERM);
  b.wait(seconds(30));
  ASSERT_TRUE(wait_until([&] { return logged("c", "elected master"); }, seconds(60),
                         "the third master to take over"))
      << log_of("c");
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(dir_.file("c/port")); }, seconds(30),
                         "the third master to listen"))
      << log_of("c");
  ASSERT_EQ(cli({"services", "--json"}, url_of("c"), output), 0) << output << log_of("c");
  EXPECT_EQ(output.find("calc"), std::string::npos) << output;
  EXPECT_FALSE(logged("c", "kept from before")) << log_of("c");
  EXPECT_EQ(client.get("/health").status, 0);
}

}  // namespace
}  // namespace clupy::test
