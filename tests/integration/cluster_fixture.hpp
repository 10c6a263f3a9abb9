// A real cluster for tests: a `clupy --master` process and `clupy --serve` processes on free
// loopback ports, in a private directory with its own token file.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "clupy/cluster.hpp"
#include "support/process.hpp"

namespace clupy::test {

class ClusterFixture : public testing::Test {
 protected:
  // Starts the master and waits until it listens. `port` 0 picks a free one.
  void start_master(std::vector<std::string> extra_args = {}, int port = 0,
                    std::map<std::string, std::string> env = {});
  // Starts a server with a fixed id that heartbeats every 200 ms.
  ChildProcess& start_server(const std::string& id, std::vector<std::string> extra_args = {},
                             std::map<std::string, std::string> env = {});
  std::string master_url() const { return "clupy://127.0.0.1:" + std::to_string(port_); }
  std::string token_file() const { return dir_.file("token"); }

  // The registry, or nullopt when the master cannot be asked.
  std::optional<ClusterStatus> status();
  std::set<std::string> server_ids();
  testing::AssertionResult servers_become(
      const std::set<std::string>& ids,
      std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Runs a client program (argv `program` + `args`) against this cluster to completion (at most
  // 240 s); returns its stdout+stderr, also kept in <name>.out.
  std::string run_client_program(const std::string& program, const std::string& name,
                                 std::vector<std::string> args);
  // The first line of `output` that starts with `prefix`, whole; "" when none does.
  static std::string line_starting(const std::string& output, const std::string& prefix);
  // The rest of that line after `prefix`.
  static std::string line_after(const std::string& output, const std::string& prefix);

  // Runs the clupy CLI to completion; returns its exit code and fills `output` (stdout+stderr).
  int run_cli(std::vector<std::string> args, std::string& output,
              std::map<std::string, std::string> env = {}, const std::string& working_dir = "");

  TempDir dir_;
  int port_ = 0;
  ChildProcess master_;
  std::map<std::string, ChildProcess> servers_;
};

}  // namespace clupy::test
