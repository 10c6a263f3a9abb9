// Test helpers for real processes: spawn, signal, wait, and free loopback ports.
// Every process started through ChildProcess is killed (SIGKILL) and reaped by its destructor,
// so a failing test never leaves daemons behind.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace clupy::test {

class ChildProcess {
 public:
  struct Options {
    std::vector<std::string> argv;           // argv[0] is the executable path
    std::map<std::string, std::string> env;  // added to (and overriding) the parent's environment
    std::string working_dir;                 // empty: inherit
    std::string log_path;                    // stdout+stderr go here; empty: inherit
  };

  ChildProcess() = default;
  explicit ChildProcess(Options options);
  ~ChildProcess();
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int signo);
  // Waits for exit; returns the raw wait status, or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // SIGKILL and reap; no-op when already gone.
  void kill();
  const std::string& log_path() const { return log_path_; }
  std::string log() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string log_path_;
};

// Polls `condition` every few milliseconds until it is true or the deadline passes.
testing::AssertionResult wait_until(const std::function<bool()>& condition,
                                    std::chrono::milliseconds timeout, const std::string& what);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
int free_loopback_port();

// A fresh directory under the system temp dir, removed with its contents by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& contents);

// Sends `request` to 127.0.0.1:port and returns what the peer answered before closing,
// or an empty string if nothing came back within the timeout.
std::string tcp_exchange(int port, const std::string& request, std::chrono::milliseconds timeout);

}  // namespace clupy::test
