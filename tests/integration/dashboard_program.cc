// The client program of the dashboard tests: tasks that print, sleep and throw, so the master's
// dashboard has something to count and show. argv[1] selects what it does; it prints lines the
// tests read ("FAILED <task id> <message>", "DONE ...").
#include <chrono>
#include <clupy/clupy.hpp>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

int prints_and_sleeps(int i, int ms) {
  std::printf("task %d says hello\n", i);
  std::fprintf(stderr, "task %d warns on stderr\n", i);
  std::fflush(nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return i;
}

int prints_and_throws(int i) {
  std::printf("task %d is about to fail\n", i);
  std::fprintf(stderr, "task %d: the input is bad\n", i);
  std::fflush(nullptr);
  throw std::runtime_error("dashboard boom " + std::to_string(i));
}

// Registered, so the dashboard names them (an unexported function shows as program+offset).
CLUPY_REMOTE(prints_and_sleeps);
CLUPY_REMOTE(prints_and_throws);

int floods(int lines) {
  for (int k = 0; k < lines; ++k) std::printf("flood line %d\n", k);
  std::fflush(nullptr);
  return lines;
}

// `work N MS F`: N tasks that print and sleep MS, then F that print and throw.
int work(int count, int ms, int failing) {
  std::vector<clupy::Future<int>> futures;
  for (int i = 0; i < count; ++i) futures.push_back(clupy::parallel(prints_and_sleeps)(i, ms));
  for (int i = 0; i < failing; ++i) futures.push_back(clupy::parallel(prints_and_throws)(i));
  clupy::wait_all(futures, std::chrono::seconds(240));
  int ok = 0, failed = 0;
  for (auto& f : futures) {
    if (!f.completed()) continue;
    if (f.successful()) {
      ++ok;
    } else {
      ++failed;
      std::printf("FAILED %llu %s\n", static_cast<unsigned long long>(f.failure().task_id),
                  f.failure().message.c_str());
    }
  }
  std::printf("DONE ok=%d failed=%d\n", ok, failed);
  return 0;
}

// `flood TASKS LINES`: TASKS tasks that print LINES lines each, one after the other.
int flood(int tasks, int lines) {
  for (int i = 0; i < tasks; ++i) clupy::parallel(floods)(lines).wait(std::chrono::seconds(60));
  std::printf("DONE flood\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  clupy::init(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string mode = argc > 1 ? argv[1] : "";
  auto arg = [&](int i, int fallback) { return argc > i ? std::atoi(argv[i]) : fallback; };
  try {
    if (mode == "work") return work(arg(2, 20), arg(3, 50), arg(4, 2));
    if (mode == "flood") return flood(arg(2, 5), arg(3, 100));
  } catch (const std::exception& e) {
    std::printf("ERROR %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: dashboard_program work N MS F | flood TASKS LINES\n");
  return 2;
}
