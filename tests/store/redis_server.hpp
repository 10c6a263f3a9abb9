// A real redis-server for the store tests: started on a free loopback port with persistence
// off, killed (SIGKILL, by PID) and restartable on the same port.
#pragma once

#include <unistd.h>

#include <clupy/store.hpp>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace clupy::test {

inline std::string which(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

class RedisServer {
 public:
  // extra_args are appended to redis-server's command line (e.g. {"--requirepass", "pw"}).
  explicit RedisServer(std::vector<std::string> extra_args = {})
      : port_(free_loopback_port()), extra_args_(std::move(extra_args)) {
    start();
  }

  void start() {
    std::string exe = which("redis-server");
    if (exe.empty()) throw std::runtime_error("redis-server is not installed");
    std::vector<std::string> argv = {exe,
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--daemonize",
                                     "no",
                                     "--dir",
                                     dir_.path()};
    argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
    process_ = ChildProcess(
        {.argv = argv, .env = {}, .working_dir = "", .log_path = dir_.file("redis.log")});
    auto ready = wait_until(
        [&] {
          // +PONG, or -NOAUTH when a password is required: either way it is serving.
          std::string answer = tcp_exchange(port_, "PING\r\n", std::chrono::milliseconds(200));
          return answer.starts_with("+PONG") || answer.starts_with("-NOAUTH");
        },
        std::chrono::seconds(20), "redis-server to answer PING on port " + std::to_string(port_));
    if (!ready) throw std::runtime_error(std::string(ready.message()) + "\n" + process_.log());
  }

  void kill() { process_.kill(); }
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }

  // Options for a test: its own key prefix, so tests sharing a server do not meet.
  StoreOptions options(const std::string& prefix) const {
    StoreOptions o;
    o.redis_url = url();
    o.key_prefix = "test:" + prefix + ":";
    return o;
  }

 private:
  int port_;
  std::vector<std::string> extra_args_;
  TempDir dir_;
  ChildProcess process_;
};

// The running test's name, for key prefixes.
inline std::string test_name() {
  const auto* info = testing::UnitTest::GetInstance()->current_test_info();
  return std::string(info->test_suite_name()) + "." + info->name();
}

// The fixture of a store test suite: one redis-server shared by the suite's tests (started
// before the first, killed after the last), each test under its own key prefix (options()).
class SharedRedisTest : public testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new RedisServer(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  StoreOptions options() const { return server_->options(test_name()); }

  static inline RedisServer* server_ = nullptr;
};

}  // namespace clupy::test
