// A master candidate for the standby tests, without the master itself: it joins the election the
// way `clupy --master` does, publishes 127.0.0.1:PORT once elected, and while is_leader() holds it
// "dispatches" (logs an act line) every few milliseconds.
//
// Usage: standby_child CONNECT ELECTION_PATH NAME PORT SESSION_MS LOG
// LOG gets one line per event, each with a CLOCK_MONOTONIC time in nanoseconds (comparable between
// processes on this machine):
//   joined T | elected T TOKEN | published T | act T | lost T REASON | exit T
// An act's time is read just before the is_leader() check it passed: a process frozen after that
// check acts later than logged, which only a fencing token checked by the receiver can catch
// (docs/coordination.md). Exit 0 after a loss; 1 on an error (printed); 2 on bad usage.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <clupy/coord.hpp>
#include <future>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "master/standby.hpp"

namespace {

using namespace std::chrono_literals;
using clupy::master::MasterElection;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class EventLog {
 public:
  explicit EventLog(const std::string& path)
      : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {
    if (fd_ < 0) throw std::runtime_error("cannot open " + path);
  }
  ~EventLog() { ::close(fd_); }
  void write(const std::string& event, std::int64_t when, const std::string& detail = "") {
    const std::string line =
        event + " " + std::to_string(when) + (detail.empty() ? "" : " " + detail) + "\n";
    std::lock_guard lock(mu_);
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
      std::cerr << "short write to the event log\n";
  }

 private:
  int fd_;
  std::mutex mu_;
};

int run(const std::vector<std::string>& args) {
  clupy::common::CoordinationSection section;
  section.enabled = true;
  section.connect = args[0];
  section.election_path = args[1];
  const std::string& name = args[2];
  const int port = std::stoi(args[3]);
  section.session_timeout = std::chrono::milliseconds(std::stoi(args[4]));
  section.connect_timeout = 30s;
  EventLog log(args[5]);
  std::promise<void> lost;

  MasterElection election(
      section, name,
      {.on_elected =
           [&](std::int64_t token) { log.write("elected", now_ns(), std::to_string(token)); },
       .on_lost =
           [&](clupy::coord::LossReason reason) {
             log.write("lost", now_ns(), clupy::coord::to_string(reason));
             lost.set_value();
           }});
  election.start();
  log.write("joined", now_ns());
  while (!election.wait_elected(1h)) {
    if (election.state() != MasterElection::State::kStandby) return 1;
  }
  if (election.publish("127.0.0.1", port)) log.write("published", now_ns());
  while (election.state() == MasterElection::State::kLeading) {
    const std::int64_t before = now_ns();
    if (election.is_leader()) log.write("act", before);
    std::this_thread::sleep_for(5ms);  // the pace of a dispatcher, not a wait for a condition
  }
  // on_lost is on its way (the state turned kLost first); stop() would drop it.
  if (lost.get_future().wait_for(60s) != std::future_status::ready) return 1;
  election.stop();
  log.write("exit", now_ns());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() != 6) {
    std::cerr << "usage: standby_child CONNECT ELECTION_PATH NAME PORT SESSION_MS LOG\n";
    return 2;
  }
  try {
    return run(args);
  } catch (const std::exception& e) {
    std::cerr << "standby_child: " << e.what() << "\n";
    return 1;
  }
}
