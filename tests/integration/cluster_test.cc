// The registry with real daemons: `clupy --master` and three `clupy --serve` processes.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "cluster_fixture.hpp"
#include "common/version.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

class ClusterTest : public ClusterFixture {};

TEST_F(ClusterTest, ThreeServersRegisterWithTheirDetails) {
  start_master();
  start_server("alpha", {"--capacity", "3", "--label", "zone=a"});
  start_server("beta");
  start_server("gamma");
  ASSERT_TRUE(servers_become({"alpha", "beta", "gamma"}));
  auto s = status();
  ASSERT_TRUE(s);
  for (const auto& server : s->servers) {
    EXPECT_TRUE(server.connected);
    EXPECT_GT(server.pid, 0u);
    EXPECT_FALSE(server.abi_tag.empty());
    EXPECT_LE(server.registered_at, server.last_heartbeat);
    if (server.server_id == "alpha") {
      EXPECT_EQ(server.capacity, 3u);
      EXPECT_EQ(server.labels.at("zone"), "a");
    } else {
      EXPECT_GE(server.capacity, 1u);  // cores by default
    }
  }
}

TEST_F(ClusterTest, KilledServerDisappearsAfterTheTtl) {
  start_master({"--registration-ttl", "1500ms"});
  start_server("alpha");
  start_server("beta");
  start_server("gamma");
  ASSERT_TRUE(servers_become({"alpha", "beta", "gamma"}));
  servers_["beta"].signal(SIGKILL);
  ASSERT_TRUE(servers_become({"alpha", "gamma"}));
  EXPECT_NE(read_file(dir_.file("master.log")).find("server beta dropped: no heartbeat"),
            std::string::npos);
}

TEST_F(ClusterTest, TerminatedServerUnregistersAtOnce) {
  // A TTL far longer than the test: only the server's own goodbye can remove it.
  start_master({"--registration-ttl", "10m"});
  start_server("alpha");
  start_server("beta");
  start_server("gamma");
  ASSERT_TRUE(servers_become({"alpha", "beta", "gamma"}));
  servers_["gamma"].signal(SIGTERM);
  auto exit_status = servers_["gamma"].wait(std::chrono::seconds(20));
  ASSERT_TRUE(exit_status);
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0);
  ASSERT_TRUE(servers_become({"alpha", "beta"}, seconds(10)));
  EXPECT_NE(read_file(dir_.file("master.log")).find("server gamma unregistered"),
            std::string::npos);
}

TEST_F(ClusterTest, RestartedMasterSeesTheServersComeBack) {
  start_master();
  start_server("alpha");
  start_server("beta");
  start_server("gamma");
  ASSERT_TRUE(servers_become({"alpha", "beta", "gamma"}));
  const int port = port_;
  // A server lost without unregistering, and three still connected: the master stops cleanly
  // (it once crashed on SIGTERM in this state).
  servers_["gamma"].signal(SIGKILL);
  servers_["gamma"].wait(seconds(10));
  master_.signal(SIGTERM);
  const auto stopped = master_.wait(seconds(20));
  ASSERT_TRUE(stopped) << "master did not stop on SIGTERM";
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0)
      << "master status " << *stopped << "\n"
      << master_.log();
  EXPECT_FALSE(status().has_value());
  start_server("gamma");
  start_master({}, port);
  ASSERT_TRUE(servers_become({"alpha", "beta", "gamma"}));
  for (const std::string id : {"alpha", "beta"})
    EXPECT_NE(read_file(dir_.file(id + ".log")).find("lost the master"), std::string::npos) << id;
}

TEST_F(ClusterTest, ServerStartedBeforeTheMasterRegistersWhenItComes) {
  const int port = free_loopback_port();
  port_ = port;
  write_file(token_file(), "a-token-shared-in-advance\n");
  ::chmod(token_file().c_str(), 0600);
  start_server("early");
  ASSERT_TRUE(wait_until(
      [&] { return read_file(dir_.file("early.log")).find("cannot connect") != std::string::npos; },
      seconds(30), "the server to report the missing master"));
  start_master({}, port);
  ASSERT_TRUE(servers_become({"early"}));
}

TEST_F(ClusterTest, WrongTokenIsRefusedWithAClearMessage) {
  start_master();
  std::string output;
  EXPECT_EQ(
      run_cli({"info", "--master-url", master_url()}, output, {{"CLUPY_TOKEN", "not-the-token"}}),
      1);
  EXPECT_NE(output.find("authentication failed"), std::string::npos) << output;

  start_server("intruder", {}, {{"CLUPY_TOKEN", "not-the-token"}});
  ASSERT_TRUE(wait_until(
      [&] {
        return read_file(dir_.file("intruder.log")).find("authentication failed") !=
               std::string::npos;
      },
      seconds(30), "the server to log the refusal"));
  EXPECT_TRUE(server_ids().empty());
  EXPECT_NE(read_file(dir_.file("master.log")).find("wrong cluster token"), std::string::npos);
}

TEST_F(ClusterTest, VersionMismatchIsRefusedNamingBothVersions) {
  start_master();
  std::string output;
  EXPECT_EQ(run_cli({"info", "--master-url", master_url(), "--token-file", token_file()}, output,
                    {{"CLUPY_TEST_PROTOCOL_MAJOR", "2"}}),
            1);
  EXPECT_NE(output.find("protocol version mismatch"), std::string::npos) << output;
  const std::string minor = std::to_string(common::kProtocolMinor);
  EXPECT_NE(output.find("protocol 1." + minor), std::string::npos) << output;
  EXPECT_NE(output.find("protocol 2." + minor), std::string::npos) << output;

  start_server("future", {}, {{"CLUPY_TEST_PROTOCOL_MAJOR", "2"}});
  ASSERT_TRUE(wait_until(
      [&] {
        return read_file(dir_.file("future.log")).find("version mismatch") != std::string::npos;
      },
      seconds(30), "the server to log the mismatch"));
  EXPECT_TRUE(server_ids().empty());
}

TEST_F(ClusterTest, CliPrintsTheRegistryForPeopleAndAsJson) {
  start_master();
  start_server("alpha", {"--label", "gpu=none"});
  start_server("beta");
  ASSERT_TRUE(servers_become({"alpha", "beta"}));
  std::string table;
  ASSERT_EQ(
      run_cli({"--client", "info", "--master-url", master_url(), "--token-file", token_file()},
              table),
      0)
      << table;
  EXPECT_NE(table.find("2 server(s), 0 client(s), 0 task(s) queued, 0 running"), std::string::npos)
      << table;
  EXPECT_NE(table.find("REGISTERED"), std::string::npos) << table;
  EXPECT_NE(table.find("gpu=none"), std::string::npos) << table;

  std::string json_text;
  ASSERT_EQ(
      run_cli({"status", "--json", "--master-url", master_url(), "--token-file", token_file()},
              json_text),
      0);
  auto json = nlohmann::json::parse(json_text);
  ASSERT_EQ(json["servers"].size(), 2u);
  EXPECT_EQ(json["servers"][0]["server_id"], "alpha");
  EXPECT_GT(json["servers"][0]["registered_at_ms"].get<std::int64_t>(), 0);
  EXPECT_EQ(json["servers"][0]["reserved_by"], "");
}

TEST_F(ClusterTest, UnreachableMasterIsAClearError) {
  std::string output;
  port_ = free_loopback_port();
  EXPECT_EQ(run_cli({"info", "--master-url", master_url()}, output, {{"CLUPY_TOKEN", "t"}}), 1);
  EXPECT_NE(output.find("cannot connect to the master at " + master_url()), std::string::npos)
      << output;
}

TEST_F(ClusterTest, UnknownYamlKeyStopsTheMasterNamingFileLineAndKey) {
  write_file(dir_.file("clupy.master.yaml"), "port: 0\nregistration_tll: 5s\n");
  std::string output;
  EXPECT_EQ(run_cli({"--master", "--token-file", token_file()}, output), 1);
  EXPECT_NE(output.find("clupy.master.yaml:2"), std::string::npos) << output;
  EXPECT_NE(output.find("registration_tll"), std::string::npos) << output;
}

TEST_F(ClusterTest, BadServerYamlValueStopsTheServer) {
  write_file(dir_.file("clupy.server.yaml"), "capacity: many\n");
  std::string output;
  EXPECT_EQ(run_cli({"--serve"}, output), 1);
  EXPECT_NE(output.find("clupy.server.yaml:1"), std::string::npos) << output;
  EXPECT_NE(output.find("'capacity'"), std::string::npos) << output;
}

TEST_F(ClusterTest, NoAuthBeyondLoopbackRefusesToStart) {
  std::string output;
  EXPECT_EQ(run_cli({"--master", "--bind", "0.0.0.0", "--port", "0", "--allow-no-auth"}, output),
            1);
  EXPECT_NE(output.find("without authentication"), std::string::npos) << output;
}

TEST_F(ClusterTest, HttpSideServesStatusMetricsAndHealthAndShrugsOffGarbage) {
  const int http = free_loopback_port();
  start_master({"--http-port", std::to_string(http)});
  start_server("alpha", {"--capacity", "3"});
  ASSERT_TRUE(servers_become({"alpha"}));
  const auto get = [&](const std::string& path) {
    return tcp_exchange(http, "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n", seconds(10));
  };
  const std::string metrics = get("/metrics");
  EXPECT_NE(metrics.find("HTTP/1.1 200"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\nclupy_servers 1\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\nclupy_worker_slots 3\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("# TYPE clupy_tasks_submitted_total counter"), std::string::npos)
      << metrics;
  const std::string status_page = get("/status");
  const auto json = nlohmann::json::parse(status_page.substr(status_page.find("\r\n\r\n") + 4));
  EXPECT_EQ(json["servers"][0]["server_id"], "alpha");
  EXPECT_NE(get("/healthz").find("200 OK"), std::string::npos);
  EXPECT_NE(get("/nowhere").find("404"), std::string::npos);
  EXPECT_NE(tcp_exchange(http, "\x16\x03\x01garbage\r\n\r\n", seconds(10)).find("400"),
            std::string::npos);
  EXPECT_TRUE(master_.running());
  EXPECT_EQ(server_ids(), std::set<std::string>{"alpha"});
}

TEST_F(ClusterTest, FirstStartWritesAPrivateTokenFile) {
  start_master();
  const std::string token = read_file(token_file());
  EXPECT_GE(token.size(), 64u);
  std::string output;
  ASSERT_EQ(
      run_cli({"info", "--master-url", master_url()}, output, {{"CLUPY_TOKEN_FILE", token_file()}}),
      0)
      << output;
}

}  // namespace
}  // namespace clupy::test
