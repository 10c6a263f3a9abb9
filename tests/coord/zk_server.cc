#include "zk_server.hpp"

#include <signal.h>

#include <filesystem>
#include <sstream>

namespace clupy::test {

namespace {

constexpr const char* kLog4j =
    "log4j.rootLogger=WARN, CONSOLE\n"
    "log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n"
    "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n"
    "log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p %c{1}: %m%n\n";

}  // namespace

ZkServer::ZkServer(int my_id, std::vector<Peer> peers)
    : port_(free_loopback_port()), my_id_(my_id), peers_(std::move(peers)) {
  std::filesystem::create_directories(dir_.file("data"));
  std::ostringstream cfg;
  // tickTime 500 lets tests negotiate session timeouts from 1 s to 10 s. forceSync=no: the tests
  // exercise the recipes, not the disk, and an fsync per lock would dominate their time.
  cfg << "tickTime=500\ninitLimit=10\nsyncLimit=5\n"
      << "dataDir=" << dir_.file("data") << "\n"
      << "clientPort=" << port_ << "\nclientPortAddress=127.0.0.1\n"
      << "admin.enableServer=false\nmaxClientCnxns=0\nforceSync=no\n"
      << "4lw.commands.whitelist=ruok,srvr,stat,mntr,conf,wchp,wchc,wchs,cons\n";
  if (!peers_.empty()) {
    for (const auto& peer : peers_) {
      cfg << "server." << peer.id << "=127.0.0.1:" << peer.quorum_port << ":" << peer.election_port
          << "\n";
    }
    write_file(dir_.file("data/myid"), std::to_string(my_id_) + "\n");
  }
  write_file(dir_.file("zoo.cfg"), cfg.str());
  write_file(dir_.file("log4j.properties"), kLog4j);
}

ZkServer::~ZkServer() {
  if (process_) process_->kill();
}

void ZkServer::start() {
  ChildProcess::Options options;
  options.argv = {"/usr/bin/java",
                  "-Xms16m",
                  "-Xmx256m",
                  "-XX:+UseSerialGC",
                  "-XX:TieredStopAtLevel=1",
                  "-Xss512k",
                  "-XX:-UsePerfData",
                  "-Djava.net.preferIPv4Stack=true",
                  "-cp",
                  dir_.path() +
                      ":/usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar"
                      ":/usr/share/java/slf4j-api.jar:/usr/share/java/slf4j-log4j12.jar"
                      ":/usr/share/java/log4j-1.2.jar",
                  "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                  dir_.file("zoo.cfg")};
  options.log_path = dir_.file("server.log");
  process_ = std::make_unique<ChildProcess>(std::move(options));
}

testing::AssertionResult ZkServer::wait_ready(std::chrono::milliseconds timeout) {
  auto result = wait_until([&] { return !mode().empty() || !running(); }, timeout,
                           "ZooKeeper on port " + std::to_string(port_) + " to serve");
  if (!result) return result << "\n" << log();
  if (!running()) return testing::AssertionFailure() << "ZooKeeper exited:\n" << log();
  return testing::AssertionSuccess();
}

void ZkServer::stop() {
  if (!process_) return;
  process_->signal(SIGTERM);
  if (!process_->wait(std::chrono::seconds(10))) process_->kill();
  process_.reset();
}

void ZkServer::kill9() {
  if (process_) process_->kill();
  process_.reset();
}

bool ZkServer::running() { return process_ && process_->running(); }

std::string ZkServer::four_letter(const std::string& word) const {
  return tcp_exchange(port_, word, std::chrono::seconds(5));
}

std::string ZkServer::mode() const {
  std::string answer = four_letter("srvr");
  auto pos = answer.find("Mode: ");
  if (pos == std::string::npos) return "";
  auto end = answer.find('\n', pos);
  return answer.substr(pos + 6, end == std::string::npos ? std::string::npos : end - pos - 6);
}

std::string ZkServer::log() const { return read_file(dir_.file("server.log")); }

ZkEnsemble::ZkEnsemble() {
  std::vector<ZkServer::Peer> peers;
  for (int id = 1; id <= 3; ++id) peers.push_back({id, free_loopback_port(), free_loopback_port()});
  for (int id = 1; id <= 3; ++id) members_.push_back(std::make_unique<ZkServer>(id, peers));
}

void ZkEnsemble::start() {
  for (auto& member : members_) member->start();
}

testing::AssertionResult ZkEnsemble::wait_ready(std::chrono::milliseconds timeout) {
  for (auto& member : members_) {
    auto result = member->wait_ready(timeout);
    if (!result) return result;
  }
  return testing::AssertionSuccess();
}

std::string ZkEnsemble::hosts() const {
  std::string hosts;
  for (const auto& member : members_) hosts += (hosts.empty() ? "" : ",") + member->hosts();
  return hosts;
}

int ZkEnsemble::leader() {
  for (int i = 0; i < size(); ++i) {
    if (members_[static_cast<std::size_t>(i)]->running() &&
        members_[static_cast<std::size_t>(i)]->mode() == "leader") {
      return i;
    }
  }
  return -1;
}

std::vector<WatchedPath> parse_wchp(const std::string& text) {
  std::vector<WatchedPath> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '/') {
      out.push_back({line, {}});
    } else if (!out.empty()) {
      auto start = line.find_first_not_of(" \t");
      if (start != std::string::npos) out.back().sessions.push_back(line.substr(start));
    }
  }
  return out;
}

namespace {

class SharedZkEnvironment : public testing::Environment {
 public:
  void TearDown() override { server.reset(); }
  std::unique_ptr<ZkServer> server;
};

// Registered before main(): gtest runs its TearDown after the binary's last test.
SharedZkEnvironment* const shared_environment =
    static_cast<SharedZkEnvironment*>(testing::AddGlobalTestEnvironment(new SharedZkEnvironment));

}  // namespace

ZkServer& shared_zk_server() {
  auto& server = shared_environment->server;
  if (!server) {
    server = std::make_unique<ZkServer>();
    server->start();
    auto ready = server->wait_ready(std::chrono::seconds(60));
    if (!ready) throw std::runtime_error(ready.message());
  }
  return *server;
}

}  // namespace clupy::test
