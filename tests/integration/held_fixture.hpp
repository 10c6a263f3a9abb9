// The fixture of the data plane's end-to-end tests (held_results_test.cc, pushed_calls_test.cc):
// a master and servers with their /metrics on free ports, and the client program held_program,
// whose own image the workers run.
#pragma once

#include <signal.h>
#include <sys/wait.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "cluster_fixture.hpp"

namespace clupy::test {

using std::chrono::seconds;

constexpr long long kThreshold = 64 * 1024;

class HeldResultsTest : public ClusterFixture {
 protected:
  // `server_yaml`: clupy.server.yaml in the daemons' working directory (every server reads it).
  void start_cluster(int servers, const std::string& server_yaml = "data_bind: 127.0.0.1\n") {
    write_file(dir_.file("clupy.server.yaml"), server_yaml);
    http_port_ = free_loopback_port();
    start_master({"--registration-ttl", "3s", "--http-port", std::to_string(http_port_)});
    std::set<std::string> ids;
    for (int i = 1; i <= servers; ++i) {
      const std::string id = "s" + std::to_string(i);
      server_http_[id] = free_loopback_port();
      start_server(id, {"--capacity", "2", "--http-port", std::to_string(server_http_[id])});
      ids.insert(id);
    }
    ASSERT_TRUE(servers_become(ids));
  }
  // `env`: added to the program's environment (test gates).
  ChildProcess start_program(const std::string& name, std::vector<std::string> args,
                             std::map<std::string, std::string> env = {}) {
    args.insert(args.begin(), HELD_PROGRAM);
    env["CLUPY_MASTER_URL"] = master_url();
    env["CLUPY_TOKEN_FILE"] = token_file();
    return ChildProcess({args, std::move(env), dir_.path(), dir_.file(name + ".out")});
  }
  std::string run_program(const std::string& name, std::vector<std::string> args) {
    ChildProcess program = start_program(name, std::move(args));
    auto status = program.wait(seconds(300));
    EXPECT_TRUE(status) << name << " did not finish:\n" << program.log();
    if (status) {
      EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << program.log();
    }
    return program.log();
  }
  static long long metric_in(const std::string& page, const std::string& name) {
    const std::string key = "\n" + name + " ";
    const auto at = page.find(key);
    if (at == std::string::npos) return -1;
    return std::stoll(page.substr(at + key.size()));
  }
  long long metric(const std::string& name) {
    return metric_in(
        tcp_exchange(http_port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", seconds(10)), name);
  }
  long long server_metric(const std::string& id, const std::string& name) {
    return metric_in(
        tcp_exchange(server_http_.at(id), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", seconds(10)),
        name);
  }
  long long servers_total(const std::string& name) {
    long long total = 0;
    for (const auto& [id, port] : server_http_) total += std::max(0LL, server_metric(id, name));
    return total;
  }
  // Every server's held bytes reach 0 within `timeout`.
  testing::AssertionResult held_bytes_drain(seconds timeout = seconds(30)) {
    if (wait_until([&] { return servers_total("clupy_server_held_result_bytes") == 0; }, timeout,
                   "the servers to free their held results"))
      return testing::AssertionSuccess();
    return testing::AssertionFailure()
           << "held bytes still " << servers_total("clupy_server_held_result_bytes");
  }
  int http_port_ = 0;
  std::map<std::string, int> server_http_;
};

}  // namespace clupy::test
