// A real ZooKeeper server (or a 3-node ensemble on loopback) for the coordination tests, started
// as a java process in a TempDir on free ports and stopped by PID (docs/SETUP.md).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace clupy::test {

class ZkServer {
 public:
  struct Peer {
    int id;
    int quorum_port;
    int election_port;
  };
  // Standalone when `peers` is empty; otherwise member `my_id` of the ensemble `peers`.
  explicit ZkServer(int my_id = 0, std::vector<Peer> peers = {});
  ~ZkServer();

  void start();
  // Waits until `srvr` reports a mode (standalone, leader or follower).
  testing::AssertionResult wait_ready(std::chrono::milliseconds timeout);
  void stop();   // SIGTERM, then SIGKILL if it lingers
  void kill9();  // SIGKILL, as a crash
  bool running();

  int port() const { return port_; }
  std::string hosts() const { return "127.0.0.1:" + std::to_string(port_); }
  // Answer to a four-letter word ("srvr", "wchp", ...), empty if the server does not answer.
  std::string four_letter(const std::string& word) const;
  // "standalone", "leader", "follower" or "" when not serving.
  std::string mode() const;
  std::string log() const;

 private:
  TempDir dir_;
  int port_;
  int my_id_;
  std::vector<Peer> peers_;
  std::unique_ptr<ChildProcess> process_;
};

// One ZooKeeper server shared by every test of a binary: started when a test first asks for it
// (under ctest each test is its own process, and tests with private servers should not pay for
// it), stopped when the binary's tests end. Throws std::runtime_error when it does not start.
ZkServer& shared_zk_server();

// Three ZooKeeper servers on 127.0.0.1 forming one ensemble.
class ZkEnsemble {
 public:
  ZkEnsemble();
  void start();
  testing::AssertionResult wait_ready(std::chrono::milliseconds timeout);
  std::string hosts() const;  // "127.0.0.1:a,127.0.0.1:b,127.0.0.1:c"
  ZkServer& member(int index) { return *members_[static_cast<std::size_t>(index)]; }
  int size() const { return static_cast<int>(members_.size()); }
  // The index of the member that is leader, or -1.
  int leader();

 private:
  std::vector<std::unique_ptr<ZkServer>> members_;
};

// Paths in `wchp` output: each watched path and the sessions watching it.
struct WatchedPath {
  std::string path;
  std::vector<std::string> sessions;
};
std::vector<WatchedPath> parse_wchp(const std::string& text);

}  // namespace clupy::test
