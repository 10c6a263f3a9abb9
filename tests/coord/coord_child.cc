// A party in the multi-process coordination tests. Usage: coord_child ROLE CONNECT ARGS...
// Each role uses one primitive the way an application would and checks, through files in a
// shared directory, what it may see inside it. Exit 0: fine; 3: an exclusion was violated;
// 2: bad usage; 1: an error (printed).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <clupy/coord.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using clupy::coord::Session;
using clupy::coord::SessionOptions;
using namespace std::chrono_literals;

namespace {

constexpr int kViolation = 3;

SessionOptions options(const std::string& connect) {
  SessionOptions o;
  o.connect = connect;
  o.session_timeout = 2s;
  o.connect_timeout = 30s;
  return o;
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path + ".tmp") << text;
  fs::rename(path + ".tmp", path);  // readers never see half a file
}

int count_prefix(const std::string& dir, const std::string& prefix) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind(prefix, 0) == 0) ++n;
  }
  return n;
}

// Blocks until killed: a party that only reacts to callbacks.
[[noreturn]] void park() {
  for (;;) ::pause();
}

// increment CONNECT LOCK FILE N: N times, under the lock, read the number in FILE and write it
// back plus one. A marker file created with O_EXCL catches two holders at once.
int increment(const std::string& connect, const std::string& lock_path, const std::string& file,
              int iterations) {
  Session session(options(connect));
  clupy::coord::Lock lock(session, lock_path);
  const std::string marker = file + ".held";
  for (int i = 0; i < iterations; ++i) {
    auto lease = lock.acquire();
    int fd = ::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0) {
      std::cerr << "two holders at once\n";
      return kViolation;
    }
    ::close(fd);
    long value = 0;
    {
      std::ifstream in(file);
      in >> value;
    }
    // A read-modify-write with a gap: two holders at once would lose an update.
    std::this_thread::sleep_for(200us);
    { std::ofstream(file, std::ios::trunc) << value + 1; }
    ::unlink(marker.c_str());
    if (!lease.still_held()) {
      std::cerr << "lease lost while holding\n";
      return 1;
    }
  }
  // Each wait sets exactly one watch (on the predecessor), and nobody gives up here, so a
  // predecessor's deletion always means our turn: no more watches than acquisitions.
  std::cout << "watches " << session.watches_set() << "\n";
  write(file + ".watches." + std::to_string(::getpid()), std::to_string(session.watches_set()));
  return 0;
}

// rwlock CONNECT PATH DIR reader|writer N
int rwlock(const std::string& connect, const std::string& path, const std::string& dir,
           const std::string& role, int iterations) {
  Session session(options(connect));
  clupy::coord::SharedMutex mutex(session, path);
  const bool writer = role == "writer";
  const std::string mine = dir + "/" + (writer ? "w-" : "r-") + std::to_string(::getpid());
  for (int i = 0; i < iterations; ++i) {
    auto lease = writer ? mutex.lock() : mutex.lock_shared();
    write(mine, "");
    int writers = count_prefix(dir, "w-");
    int readers = count_prefix(dir, "r-");
    if (writer ? (writers != 1 || readers != 0) : writers != 0) {
      std::cerr << role << " saw " << writers << " writers, " << readers << " readers\n";
      return kViolation;
    }
    std::this_thread::sleep_for(2ms);  // widen the window in which a violation would show
    fs::remove(mine);
  }
  return 0;
}

// semaphore CONNECT PATH DIR LEASES N: never more holders than leases; writes the most holders
// it saw at once to DIR/peak-<pid>. A holder alone waits (100 ms at most) for a second one, so
// that a semaphore admitting one holder at a time would show as a peak of 1.
int semaphore(const std::string& connect, const std::string& path, const std::string& dir,
              int leases, int iterations) {
  Session session(options(connect));
  clupy::coord::Semaphore sem(session, path, leases);
  const std::string mine = dir + "/s-" + std::to_string(::getpid());
  int peak = 0;
  for (int i = 0; i < iterations; ++i) {
    auto lease = sem.acquire();
    write(mine, "");
    int holders = count_prefix(dir, "s-");
    const auto alone_until = std::chrono::steady_clock::now() + 100ms;
    while (holders < 2 && std::chrono::steady_clock::now() < alone_until) {
      std::this_thread::sleep_for(1ms);
      holders = count_prefix(dir, "s-");
    }
    if (holders > leases) {
      std::cerr << holders << " holders of " << leases << " leases\n";
      return kViolation;
    }
    peak = std::max(peak, holders);
    std::this_thread::sleep_for(5ms);
    fs::remove(mine);
  }
  write(dir + "/peak-" + std::to_string(::getpid()), std::to_string(peak));
  return 0;
}

// double_barrier CONNECT PATH DIR PARTIES: everyone must have arrived before anyone enters,
// and everyone must have started leaving before anyone has left.
int double_barrier(const std::string& connect, const std::string& path, const std::string& dir,
                   int parties) {
  Session session(options(connect));
  clupy::coord::DoubleBarrier barrier(session, path, parties);
  const std::string pid = std::to_string(::getpid());
  write(dir + "/in-" + pid, "");
  if (!barrier.enter(60s)) return 1;
  if (count_prefix(dir, "in-") != parties) {
    std::cerr << "entered with " << count_prefix(dir, "in-") << " of " << parties << "\n";
    return kViolation;
  }
  write(dir + "/out-" + pid, "");
  if (!barrier.leave(60s)) return 1;
  if (count_prefix(dir, "out-") != parties) {
    std::cerr << "left with " << count_prefix(dir, "out-") << " of " << parties << "\n";
    return kViolation;
  }
  return 0;
}

// barrier_wait CONNECT PATH DIR: waits at the gate, then writes passed-PID.
int barrier_wait(const std::string& connect, const std::string& path, const std::string& dir) {
  Session session(options(connect));
  clupy::coord::Barrier barrier(session, path);
  if (!barrier.wait(60s)) return 1;
  write(dir + "/passed-" + std::to_string(::getpid()), "");
  return 0;
}

// elect CONNECT PATH NAME DIR: joins the election; while leading, DIR/leader-NAME exists.
int elect(const std::string& connect, const std::string& path, const std::string& name,
          const std::string& dir) {
  Session session(options(connect));
  const std::string file = dir + "/leader-" + name;
  clupy::coord::LeaderElection election(
      session, path, name,
      {.on_gained = [&](std::int64_t token) { write(file, std::to_string(token)); },
       .on_lost = [&](clupy::coord::LossReason) { fs::remove(file); }});
  election.start();
  write(dir + "/joined-" + name, "");
  park();
}

// hold CONNECT PATH DIR: takes the lock, reports its loss and the session's expiry in files.
int hold(const std::string& connect, const std::string& path, const std::string& dir) {
  Session session(options(connect));
  session.add_state_listener([&](clupy::coord::SessionState state) {
    if (state == clupy::coord::SessionState::kExpired) write(dir + "/expired", "");
  });
  clupy::coord::Lock lock(session, path);
  auto lease = lock.acquire();
  lease.on_lost([&](clupy::coord::LossReason reason) {
    write(dir + "/lost", std::string(clupy::coord::to_string(reason)) +
                             (lease.still_held() ? " still_held" : " not_held"));
  });
  write(dir + "/held", std::to_string(session.session_id()));
  park();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() < 2) return 2;
  const std::string& role = args[0];
  const std::string& connect = args[1];
  try {
    if (role == "increment" && args.size() == 5) {
      return increment(connect, args[2], args[3], std::stoi(args[4]));
    }
    if (role == "rwlock" && args.size() == 6) {
      return rwlock(connect, args[2], args[3], args[4], std::stoi(args[5]));
    }
    if (role == "semaphore" && args.size() == 6) {
      return semaphore(connect, args[2], args[3], std::stoi(args[4]), std::stoi(args[5]));
    }
    if (role == "double_barrier" && args.size() == 5) {
      return double_barrier(connect, args[2], args[3], std::stoi(args[4]));
    }
    if (role == "barrier_wait" && args.size() == 4) return barrier_wait(connect, args[2], args[3]);
    if (role == "elect" && args.size() == 5) return elect(connect, args[2], args[3], args[4]);
    if (role == "hold" && args.size() == 4) return hold(connect, args[2], args[3]);
  } catch (const std::exception& e) {
    std::cerr << role << ": " << e.what() << "\n";
    return 1;
  }
  std::cerr << "usage: coord_child ROLE CONNECT ARGS...\n";
  return 2;
}
