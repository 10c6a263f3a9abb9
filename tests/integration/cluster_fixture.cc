#include "cluster_fixture.hpp"

#include <sys/wait.h>

#include <filesystem>
#include <sstream>

namespace clupy::test {

void ClusterFixture::start_master(std::vector<std::string> extra_args, int port,
                                  std::map<std::string, std::string> env) {
  const std::string port_file = dir_.file("master.port");
  std::filesystem::remove(port_file);
  std::vector<std::string> argv = {CLUPY_BINARY,  "--master", "--port",       std::to_string(port),
                                   "--port-file", port_file,  "--token-file", token_file(),
                                   "--log-level", "debug"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  master_ = ChildProcess({argv, std::move(env), dir_.path(), dir_.file("master.log")});
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(port_file) || !master_.running(); },
                         std::chrono::seconds(30), "the master to listen"));
  ASSERT_TRUE(master_.running()) << "master exited:\n" << master_.log();
  port_ = std::stoi(read_file(port_file));
}

ChildProcess& ClusterFixture::start_server(const std::string& id,
                                           std::vector<std::string> extra_args,
                                           std::map<std::string, std::string> env) {
  std::vector<std::string> argv = {CLUPY_BINARY,
                                   "--serve",
                                   "--master-url",
                                   master_url(),
                                   "--token-file",
                                   token_file(),
                                   "--server-id",
                                   id,
                                   "--registration-interval",
                                   "200ms",
                                   "--failure-retry-interval",
                                   "200ms",
                                   "--log-level",
                                   "debug"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  servers_[id] = ChildProcess({argv, env, dir_.path(), dir_.file(id + ".log")});
  return servers_[id];
}

std::optional<ClusterStatus> ClusterFixture::status() {
  try {
    ConnectOptions options;
    options.master_url = master_url();
    options.token_file = token_file();
    options.config_file = dir_.file("no-client-config.yaml");
    write_file(options.config_file, "");
    return cluster_status(options);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::set<std::string> ClusterFixture::server_ids() {
  std::set<std::string> ids;
  if (auto s = status())
    for (const auto& server : s->servers) ids.insert(server.server_id);
  return ids;
}

testing::AssertionResult ClusterFixture::servers_become(const std::set<std::string>& ids,
                                                        std::chrono::milliseconds timeout) {
  std::string wanted;
  for (const auto& id : ids) wanted += id + " ";
  auto result = wait_until([&] { return server_ids() == ids; }, timeout,
                           "the registry to list exactly {" + wanted + "}");
  if (!result) {
    std::string seen;
    for (const auto& id : server_ids()) seen += id + " ";
    result << "; it lists {" << seen << "}";
  }
  return result;
}

std::string ClusterFixture::run_client_program(const std::string& program, const std::string& name,
                                               std::vector<std::string> args) {
  args.insert(args.begin(), program);
  ChildProcess child({args,
                      {{"CLUPY_MASTER_URL", master_url()}, {"CLUPY_TOKEN_FILE", token_file()}},
                      dir_.path(),
                      dir_.file(name + ".out")});
  EXPECT_TRUE(child.wait(std::chrono::seconds(240))) << name << " did not finish";
  return child.log();
}

std::string ClusterFixture::line_starting(const std::string& output, const std::string& prefix) {
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return line;
  return "";
}

std::string ClusterFixture::line_after(const std::string& output, const std::string& prefix) {
  const std::string line = line_starting(output, prefix);
  return line.empty() ? "" : line.substr(prefix.size());
}

int ClusterFixture::run_cli(std::vector<std::string> args, std::string& output,
                            std::map<std::string, std::string> env,
                            const std::string& working_dir) {
  args.insert(args.begin(), CLUPY_BINARY);
  const std::string log = dir_.file("cli.log");
  std::filesystem::remove(log);
  ChildProcess cli({args, env, working_dir.empty() ? dir_.path() : working_dir, log});
  auto status = cli.wait(std::chrono::seconds(60));
  output = read_file(log);
  if (!status) return -1;
  return WIFEXITED(*status) ? WEXITSTATUS(*status) : 128 + WTERMSIG(*status);
}

}  // namespace clupy::test
