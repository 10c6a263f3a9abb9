// A CluPy client program for coordination in the cluster: tasks and the program that submitted
// them share a lock and a double barrier through clupy::coord::cluster_session_options().
// argv[1] selects a scenario; it prints lines the test reads.
#include <time.h>
#include <unistd.h>

#include <clupy/clupy.hpp>
#include <clupy/coord.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <thread>

namespace {

std::string this_server() {
  const char* s = std::getenv("CLUPY_WORKER_SERVER");
  return s != nullptr ? s : "client";
}

long long wall_clock_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<long long>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

int read_counter(const std::string& file) {
  std::ifstream in(file);
  int value = 0;
  in >> value;
  return value;
}

// Task: under the cluster's lock, a slow read-modify-write of a counter file. Without mutual
// exclusion, concurrent tasks would lose updates. Returns the server it ran on.
// Counts itself in `<lock_path>-reached` just before it asks for the lock.
std::string locked_increment(std::string lock_path, std::string file) {
  clupy::coord::Session zk(clupy::coord::cluster_session_options());
  clupy::coord::Lock lock(zk, lock_path);
  clupy::coord::Counter(zk, lock_path + "-reached").add(1);
  clupy::coord::Lease lease = lock.acquire();
  const int value = read_counter(file);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::ofstream(file, std::ios::trunc) << value + 1 << "\n";
  return this_server();
}

// Task: one party of a double barrier; returns when it got through enter() (wall clock, µs).
long long meet(std::string path, int parties) {
  clupy::coord::Session zk(clupy::coord::cluster_session_options());
  clupy::coord::DoubleBarrier barrier(zk, path, parties);
  clupy::coord::Counter(zk, path + "-arrived").add(1);
  if (!barrier.enter(std::chrono::seconds(60))) throw std::runtime_error("enter timed out");
  const long long entered = wall_clock_us();
  if (!barrier.leave(std::chrono::seconds(60))) throw std::runtime_error("leave timed out");
  return entered;
}

// Task: what cluster_session_options() says on a server whose master has no coordination.
std::string try_coordination(int) {
  try {
    clupy::coord::cluster_session_options();
    return "CONFIGURED";
  } catch (const clupy::CoordError& e) {
    return e.kind() == clupy::CoordError::Kind::kNotConfigured ? "NOT_CONFIGURED" : e.what();
  }
}

// The program holds the lock while it submits; no task may finish before it lets go. It waits
// (60 s at most) until tasks have reached the lock, so the check proves they were held back.
int scenario_lock(int tasks, const std::string& dir) {
  const std::string file = dir + "/counter";
  std::ofstream(file, std::ios::trunc) << 0 << "\n";
  clupy::coord::Session zk(clupy::coord::cluster_session_options());
  clupy::coord::Lock lock(zk, "/it/lock");
  clupy::coord::Lease held = lock.acquire();
  std::vector<clupy::Future<std::string>> futures;
  for (int i = 0; i < tasks; ++i)
    futures.push_back(clupy::parallel(locked_increment)(std::string("/it/lock"), file));
  clupy::coord::Counter reached(zk, "/it/lock-reached");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (reached.get() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // Give the tasks that reached the lock time to get through it, were it not held.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int finished_while_held = 0;
  for (auto& f : futures) finished_while_held += f.completed() ? 1 : 0;
  std::printf("WHILE_HELD completed=%d reached=%s\n", finished_while_held,
              reached.get() >= 2 ? "yes" : "no");
  held.release();
  clupy::wait_all(futures, std::chrono::seconds(120));
  int ok = 0;
  std::set<std::string> servers;
  for (auto& f : futures) {
    if (f.completed() && f.successful()) {
      ++ok;
      servers.insert(f.value());
    } else if (f.completed()) {
      std::printf("FAILED %s\n", f.failure().to_string().c_str());
    }
  }
  std::printf("LOCK ok=%d counter=%d servers=%zu\n", ok, read_counter(file), servers.size());
  return 0;
}

// Two tasks and the program form a double barrier of three: the tasks cannot get through enter()
// before the program, which joins late, has entered too.
int scenario_barrier() {
  const std::string path = "/it/barrier";
  auto first = clupy::parallel(meet)(path, 3);
  auto second = clupy::parallel(meet)(path, 3);
  clupy::coord::Session zk(clupy::coord::cluster_session_options());
  // Join only once both tasks are at the barrier, so their getting through proves they waited.
  clupy::coord::Counter arrived(zk, path + "-arrived");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (arrived.get() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  clupy::coord::DoubleBarrier barrier(zk, path, 3);
  const long long joined = wall_clock_us();
  const bool entered = barrier.enter(std::chrono::seconds(60));
  const bool left = entered && barrier.leave(std::chrono::seconds(60));
  const long long a = first.get();
  const long long b = second.get();
  std::printf("BARRIER entered=%d left=%d tasks_after_program=%d\n", entered ? 1 : 0, left ? 1 : 0,
              (a >= joined && b >= joined) ? 1 : 0);
  return 0;
}

int scenario_none() {
  int program = 0;
  try {
    clupy::coord::cluster_session_options();
  } catch (const clupy::CoordError& e) {
    program = e.kind() == clupy::CoordError::Kind::kNotConfigured ? 1 : 0;
  }
  const std::string task = clupy::parallel(try_coordination)(0).get();
  std::printf("NONE program=%s task=%s\n", program ? "NOT_CONFIGURED" : "CONFIGURED", task.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  clupy::init(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "lock" && argc > 3) return scenario_lock(std::atoi(argv[2]), argv[3]);
    if (mode == "barrier") return scenario_barrier();
    if (mode == "none") return scenario_none();
  } catch (const std::exception& e) {
    std::printf("ERROR %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: coord_task_program lock N DIR | barrier | none\n");
  return 2;
}
