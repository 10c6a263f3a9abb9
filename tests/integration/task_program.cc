// A CluPy client program for the parallel-execution tests. The tests start it against a real
// cluster; its own image is what the servers' workers run. argv[1] selects a scenario; it
// prints lines the test reads ("RESULT ...", "FAILURE ...", "PROGRESS n", "DONE ...").
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <clupy/clupy.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

long square(long x) { return x * x; }

int throws_invalid_argument(int n) {
  if (n >= 0) throw std::invalid_argument("n must be negative, got " + std::to_string(n));
  return n;
}

int segfaults(int n) {
  // A real SIGSEGV, delivered the way a wild pointer's would be; raised rather than provoked so
  // that sanitizer builds (which intercept null stores) exercise the same path.
  if (n >= 0) {
    std::signal(SIGSEGV, SIG_DFL);
    std::raise(SIGSEGV);
  }
  return n;
}

int aborts(int n) {
  if (n >= 0) std::abort();
  return n;
}

int exits(int code) {
  std::fflush(nullptr);
  std::_Exit(code);
}

int sleeps(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

std::string server_of_worker() {
  const char* s = std::getenv("CLUPY_WORKER_SERVER");
  return s ? s : "?";
}

// Where a task ran and when (microseconds of CLOCK_REALTIME), after sleeping `ms`.
struct Visit {
  std::string server;
  long pid;
  long long start_us;
  long long end_us;
};

long long now_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<long long>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

Visit visit(int ms) {
  Visit v{server_of_worker(), static_cast<long>(::getpid()), now_us(), 0};
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  v.end_us = now_us();
  return v;
}

int chatty(int n) {
  std::printf("hello from task %d on stdout\n", n);
  std::fprintf(stderr, "warning from task %d on stderr\n", n);
  return n;
}

struct Point {
  int x;
  double y;
  std::string label;
};

Point move_point(Point p, std::map<std::string, int> offsets) {
  p.x += offsets["dx"];
  p.label += "+moved";
  return p;
}

std::string describe(const clupy::Failure& f) {
  return std::string(clupy::to_string(f.kind)) + "|" + f.type_name + "|" + f.message + "|" +
         f.server + "|" + std::to_string(f.task_id) + "|" + std::to_string(f.signal) + "|" +
         std::to_string(f.exit_code);
}

int scenario_sequential(int n) {
  std::vector<clupy::Future<long>> futures;
  std::vector<std::atomic<int>> callbacks(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    futures.push_back(clupy::parallel(square)(i));
    futures.back().succeed([&callbacks, i](long) { callbacks[static_cast<std::size_t>(i)]++; });
  }
  if (!clupy::wait_all(futures, std::chrono::seconds(120))) {
    std::printf("TIMEOUT\n");
    return 1;
  }
  int wrong = 0, callback_errors = 0;
  for (int i = 0; i < n; ++i) {
    if (!futures[static_cast<std::size_t>(i)].successful() ||
        futures[static_cast<std::size_t>(i)].value() != square(i))
      ++wrong;
    if (callbacks[static_cast<std::size_t>(i)] != 1) ++callback_errors;
  }
  std::printf("DONE tasks=%d wrong=%d callback_errors=%d\n", n, wrong, callback_errors);
  return wrong || callback_errors ? 1 : 0;
}

int scenario_failures() {
  auto before = clupy::parallel(square)(7);
  auto exception = clupy::parallel(throws_invalid_argument)(1);
  auto segfault = clupy::parallel(segfaults)(1);
  auto abort = clupy::parallel(aborts)(1);
  auto exit_code = clupy::parallel(exits)(3);
  auto timeout = clupy::parallel(sleeps, {.timeout = std::chrono::milliseconds(300)})(10'000);
  std::vector<clupy::Future<int>> bad = {exception, segfault, abort, exit_code, timeout};
  clupy::wait_all(bad, std::chrono::seconds(60));
  auto after = clupy::parallel(square)(8);
  after.wait(std::chrono::seconds(60));
  before.wait(std::chrono::seconds(60));
  std::printf("BEFORE %ld\n", before.successful() ? before.value() : -1L);
  const char* names[] = {"exception", "segfault", "abort", "exit", "timeout"};
  for (std::size_t i = 0; i < bad.size(); ++i) {
    if (!bad[i].completed())
      std::printf("FAILURE %s|not completed\n", names[i]);
    else if (bad[i].successful())
      std::printf("FAILURE %s|succeeded?!\n", names[i]);
    else
      std::printf("FAILURE %s|%s\n", names[i], describe(bad[i].failure()).c_str());
  }
  try {
    exception.get();
  } catch (const clupy::RemoteError& e) {
    std::printf("GET %s\n", e.what());
  }
  std::printf("AFTER %ld\n", after.successful() ? after.value() : -1L);
  return 0;
}

// Quick tasks with a crash every `every`-th one, all submitted at once so that workers hold
// several of them and answer in batches: exactly the crashing tasks must fail, as crashes,
// and every other one must succeed (rerun if its worker died with its result unsent).
int crash_on_multiple(int i, int every) {
  if (i % every == every - 1) {
    std::signal(SIGSEGV, SIG_DFL);
    std::raise(SIGSEGV);
  }
  return i;
}

int scenario_crash_mix(int n, int every) {
  auto task = clupy::parallel(crash_on_multiple);
  std::vector<clupy::Future<int>> futures;
  for (int i = 0; i < n; ++i) futures.push_back(task(i, every));
  clupy::wait_all(futures, std::chrono::seconds(120));
  int ok = 0, crashed = 0, wrong = 0;
  for (int i = 0; i < n; ++i) {
    const auto& f = futures[static_cast<std::size_t>(i)];
    const bool should_crash = i % every == every - 1;
    if (f.successful() && !should_crash && f.value() == i) {
      ++ok;
    } else if (f.completed() && !f.successful() && should_crash &&
               f.failure().kind == clupy::FailureKind::kCrash && f.failure().signal == SIGSEGV) {
      ++crashed;
    } else {
      ++wrong;
      std::printf("WRONG %d %s\n", i,
                  f.completed() && !f.successful() ? describe(f.failure()).c_str()
                                                   : "succeeded or pending");
    }
  }
  std::printf("CRASHMIX ok=%d crashed=%d wrong=%d\n", ok, crashed, wrong);
  return 0;
}

// A task printing a lot while quick tasks run beside it: every line must reach the client,
// attributed to the printing task, before its result; the quick tasks must not wait for it.
int prints_lines(int n) {
  for (int i = 0; i < n; ++i)
    std::printf("chatty line %d of %d ..........................................\n", i, n);
  std::fflush(stdout);
  return n;
}

int scenario_chatty(int lines) {
  auto chatty = clupy::parallel(prints_lines)(lines);
  std::vector<clupy::Future<long>> quick;
  for (int i = 0; i < 200; ++i) quick.push_back(clupy::parallel(square)(i));
  clupy::wait_all(quick, std::chrono::seconds(60));
  chatty.wait(std::chrono::seconds(60));
  int ok = 0;
  for (int i = 0; i < 200; ++i)
    ok += quick[static_cast<std::size_t>(i)].successful() &&
          quick[static_cast<std::size_t>(i)].value() == square(i);
  std::fflush(stdout);
  std::printf("CHATTY quick_ok=%d printed=%d\n", ok, chatty.successful() ? chatty.value() : -1);
  return 0;
}

// Long-running tasks, reporting progress, so a test can kill things mid-run.
int scenario_long(int n, int ms, int retries) {
  std::vector<clupy::Future<int>> futures;
  std::atomic<int> finished{0};
  for (int i = 0; i < n; ++i) {
    futures.push_back(clupy::parallel(sleeps, {.retries = retries})(ms));
    futures.back().succeed([&](int) { ++finished; }).fail([&](const clupy::Failure&) {
      ++finished;
    });
  }
  int last = -1;
  // The master's address as this program thread sees it while the I/O thread may fail over to
  // another master (a race ThreadSanitizer would report if the address were not guarded).
  std::set<std::string> masters{clupy::master_url()};
  while (!clupy::wait_all(futures, std::chrono::milliseconds(20))) {
    masters.insert(clupy::master_url());
    if (finished / 10 != last) {
      last = finished / 10;
      std::printf("PROGRESS %d\n", finished.load());
      std::fflush(stdout);
    }
    if (futures.size() > 0 && finished == n) break;
  }
  int ok = 0, failed = 0;
  std::set<std::string> kinds;
  for (auto& f : futures) {
    if (f.successful() && f.value() == ms)
      ++ok;
    else if (f.completed() && !f.successful()) {
      ++failed;
      kinds.insert(describe(f.failure()));
    }
  }
  // Every future reports once: a callback run twice would count here.
  std::printf("DONE ok=%d failed=%d callbacks=%d\n", ok, failed, finished.load());
  std::printf("MASTERS seen=%zu\n", masters.size());
  for (const auto& k : kinds) std::printf("KIND %s\n", k.c_str());
  return 0;
}

// One long task, then `n` short ones, on one server: how many short tasks ran in the long
// task's worker (they waited behind it, while the other worker could have run them).
int scenario_behind_long(int long_ms, int n, int short_ms) {
  auto f = clupy::parallel(visit);
  std::vector<clupy::Future<Visit>> futures;
  futures.push_back(f(long_ms));
  for (int i = 0; i < n; ++i) futures.push_back(f(short_ms));
  if (!clupy::wait_all(futures, std::chrono::seconds(120))) {
    std::printf("TIMEOUT\n");
    return 1;
  }
  const long long_pid = futures.front().value().pid;
  int behind = 0;
  for (std::size_t i = 1; i < futures.size(); ++i)
    if (futures[i].value().pid == long_pid) ++behind;
  std::printf("BEHIND_LONG %d\n", behind);
  return 0;
}

int scenario_spread(unsigned server_count, unsigned max_in_flight, int n, int ms) {
  auto f = clupy::parallel(visit, {.server_count = server_count, .max_in_flight = max_in_flight});
  std::vector<clupy::Future<Visit>> futures;
  for (int i = 0; i < n; ++i) futures.push_back(f(ms));
  if (!clupy::wait_all(futures, std::chrono::seconds(120))) {
    std::printf("TIMEOUT\n");
    return 1;
  }
  std::set<std::string> servers;
  std::vector<std::pair<long long, int>> events;
  for (auto& v : futures) {
    servers.insert(v.value().server);
    events.emplace_back(v.value().start_us, 1);
    events.emplace_back(v.value().end_us, -1);
  }
  std::sort(events.begin(), events.end());
  int running = 0, peak = 0;
  for (auto& [t, d] : events) peak = std::max(peak, running += d);
  std::printf("SERVERS");
  for (const auto& s : servers) std::printf(" %s", s.c_str());
  std::printf("\nPEAK %d\n", peak);
  return 0;
}

int scenario_types() {
  const int base = 40;
  const double scale = 0.5;
  auto lambda = clupy::parallel([base, scale](int x) { return (base + x) * scale; })(4);
  auto strings = clupy::parallel([](std::string a, std::vector<std::string> b) {
    for (auto& s : b) a += "," + s;
    return a;
  })(std::string("a"), std::vector<std::string>{"b", "c"});
  auto aggregate =
      clupy::parallel(move_point)(Point{1, 2.5, "p"}, std::map<std::string, int>{{"dx", 10}});
  auto nothing = clupy::parallel([](int) {})(1);
  int ok = 0;
  if (lambda.get() == 22.0)
    ++ok;
  else
    std::printf("BAD lambda %f\n", lambda.get());
  if (strings.get() == "a,b,c")
    ++ok;
  else
    std::printf("BAD strings %s\n", strings.get().c_str());
  Point p = aggregate.get();
  if (p.x == 11 && p.y == 2.5 && p.label == "p+moved")
    ++ok;
  else
    std::printf("BAD aggregate\n");
  nothing.get();
  ++ok;
  std::printf("TYPES ok=%d\n", ok);
  return ok == 4 ? 0 : 1;
}

int scenario_output() {
  auto f = clupy::parallel(chatty)(42);
  std::printf("RESULT %d\n", f.get());
  return 0;
}

// Creates `marker`, then sleeps `ms`: its caller can see it has started running.
int marks_then_sleeps(std::string marker, int ms) {
  std::FILE* file = std::fopen(marker.c_str(), "w");
  if (file == nullptr) throw std::runtime_error("cannot create " + marker);
  std::fclose(file);
  return sleeps(ms);
}

// `marker_dir` empty: cancels `pause_ms` after submitting, maybe before the task started.
// Otherwise cancels once the task has shown it is running (a file in `marker_dir`; 60 s at most).
int scenario_cancel(int pause_ms, const std::string& marker_dir) {
  // One worker slot: `running` occupies it, `queued` waits behind it. With no pause and no
  // marker, both are cancelled while the worker may not have started `running` yet.
  const std::string marker = marker_dir + "/running";
  auto running = marker_dir.empty() ? clupy::parallel(sleeps)(20'000)
                                    : clupy::parallel(marks_then_sleeps)(marker, 20'000);
  std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
  if (!marker_dir.empty()) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (::access(marker.c_str(), F_OK) != 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::printf("RUNNING before cancel=%s\n", ::access(marker.c_str(), F_OK) == 0 ? "yes" : "no");
  }
  auto queued = clupy::parallel(sleeps)(20'000);
  const auto started = std::chrono::steady_clock::now();
  queued.cancel();
  running.cancel();
  auto next = clupy::parallel(square)(9);
  const long value = next.get();  // runs only once the cancelled task's worker is stopped
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  std::printf("CANCELLED running=%s queued=%s\n",
              std::string(clupy::to_string(running.failure().kind)).c_str(),
              std::string(clupy::to_string(queued.failure().kind)).c_str());
  std::printf("NEXT %ld after %lld ms\n", value, static_cast<long long>(took.count()));
  return 0;
}

std::size_t measure(std::string bytes) { return bytes.size(); }

// More bytes in one burst than a frame may hold: the batch must be split, not dropped; and one
// argument too big for any frame fails its own future at once.
int scenario_payload(int n, int mib) {
  std::vector<clupy::Future<std::size_t>> futures;
  for (int i = 0; i < n; ++i)
    futures.push_back(
        clupy::parallel(measure)(std::string(static_cast<std::size_t>(mib) << 20, 'x')));
  auto huge = clupy::parallel(measure)(std::string(std::size_t{40} << 20, 'y'));
  const bool all = clupy::wait_all(futures, std::chrono::seconds(120));
  int ok = 0;
  for (auto& f : futures)
    ok += f.successful() && f.value() == (static_cast<std::size_t>(mib) << 20);
  std::printf("PAYLOAD all=%d ok=%d\n", all ? 1 : 0, ok);
  huge.wait(std::chrono::seconds(10));
  std::printf("HUGE %s\n", huge.successful() ? "succeeded?!" : describe(huge.failure()).c_str());
  return 0;
}

// Bytes that differ at every position, so a misplaced or dropped byte shows.
std::string pattern(std::size_t size, unsigned seed) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131 + seed) % 251);
  return s;
}

std::string mirror(std::string bytes) {
  std::reverse(bytes.begin(), bytes.end());
  return bytes;
}

// Sizes around the attachment threshold (64 KiB) and up to near the largest call a frame takes
// (half of max_frame_size): each travels both ways and must come back byte for byte.
int scenario_big_echo() {
  const std::size_t kib = 1024;
  const std::vector<std::size_t> sizes = {0, 1, 64 * kib - 100, 64 * kib - 1, 64 * kib,
                                          64 * kib + 1, 1024 * kib, 3 * 1024 * kib, 9 * 1024 * kib,
                                          31 * 1024 * kib,
                                          // More than a worker's call arena holds at once
                                          // (64 MiB): some of these take the socket instead.
                                          20 * 1024 * kib, 20 * 1024 * kib, 20 * 1024 * kib,
                                          20 * 1024 * kib, 20 * 1024 * kib, 20 * 1024 * kib};
  std::vector<clupy::Future<std::string>> futures;
  for (std::size_t i = 0; i < sizes.size(); ++i)
    futures.push_back(clupy::parallel(mirror)(pattern(sizes[i], static_cast<unsigned>(i))));
  // A burst of mixed sizes in one batch: small ones share frames, big ones travel alone.
  for (int i = 0; i < 40; ++i) {
    const std::size_t size = i % 3 == 0 ? (1u << 20) + static_cast<std::size_t>(i) : 100u + i;
    futures.push_back(clupy::parallel(mirror)(pattern(size, 1000u + static_cast<unsigned>(i))));
  }
  const bool all = clupy::wait_all(futures, std::chrono::seconds(120));
  int ok = 0;
  for (std::size_t i = 0; i < futures.size(); ++i) {
    const std::size_t size = i < sizes.size()
                                 ? sizes[i]
                                 : ((i - sizes.size()) % 3 == 0 ? (1u << 20) + (i - sizes.size())
                                                                : 100u + (i - sizes.size()));
    const unsigned seed = i < sizes.size() ? static_cast<unsigned>(i)
                                           : 1000u + static_cast<unsigned>(i - sizes.size());
    if (futures[i].successful() && futures[i].value() == mirror(pattern(size, seed))) {
      ++ok;
    } else if (futures[i].completed() && !futures[i].successful()) {
      std::printf("FAILED %zu bytes: %s\n", size, describe(futures[i].failure()).c_str());
    }
  }
  std::printf("BIGECHO all=%d ok=%d of %zu\n", all ? 1 : 0, ok, futures.size());
  return 0;
}

std::size_t crash_on_demand(std::string bytes, bool crash) {
  if (crash) {
    std::signal(SIGSEGV, SIG_DFL);
    std::raise(SIGSEGV);
  }
  return bytes.size();
}

// A worker that dies holding a large payload fails only the task it ran.
int scenario_big_crash() {
  std::vector<clupy::Future<std::size_t>> futures;
  for (int i = 0; i < 12; ++i)
    futures.push_back(clupy::parallel(crash_on_demand)(pattern(1u << 20, 7), i == 5));
  clupy::wait_all(futures, std::chrono::seconds(120));
  int ok = 0, crashed = 0;
  for (int i = 0; i < 12; ++i) {
    if (futures[i].successful() && futures[i].value() == (1u << 20)) ++ok;
    if (i == 5 && !futures[i].successful() && futures[i].completed() &&
        futures[i].failure().kind == clupy::FailureKind::kCrash)
      ++crashed;
  }
  std::printf("BIGCRASH ok=%d crashed=%d\n", ok, crashed);
  return 0;
}

// Two functions in flight, drawn by clupy::progress (every fourth call of the second fails):
// on a terminal a bar per function and a total, into a pipe plain lines.
int scenario_progress(int n, int ms) {
  std::vector<clupy::Future<int>> futures;
  for (int i = 0; i < n; ++i) {
    futures.push_back(clupy::parallel(sleeps)(ms));
    futures.push_back(clupy::parallel(throws_invalid_argument)(i % 4 == 0 ? i : -1 - i));
  }
  clupy::ProgressOptions options;
  options.interval = std::chrono::milliseconds(100);
  clupy::progress(futures, options);
  int failed = 0;
  for (auto& f : futures) failed += f.completed() && !f.successful();
  std::printf("PROGRESS_DONE tasks=%zu failed=%d\n", futures.size(), failed);
  return 0;
}

}  // namespace

// Where this execution runs and who dispatched it, as clupy::this_task() says.
std::string who_runs_me() {
  const auto info = clupy::this_task();
  if (!info) return "none";
  return info->server_id + " " + std::to_string(info->master_fencing_token) + " " +
         std::to_string(info->task_id);
}

// `n` tasks report their this_task(); prints the distinct servers, master tokens and task ids
// they saw, and what the program's own thread sees (nothing: it is not a task).
int scenario_whoami(int n) {
  std::vector<clupy::Future<std::string>> futures;
  for (int i = 0; i < n; ++i) futures.push_back(clupy::parallel(who_runs_me)());
  std::set<std::string> servers, tokens, ids;
  for (auto& f : futures) {
    std::istringstream fields(f.get());
    std::string server, token, id;
    fields >> server >> token >> id;
    servers.insert(server);
    tokens.insert(token);
    if (!id.empty() && id != "0") ids.insert(id);
  }
  auto joined = [](const std::set<std::string>& items) {
    std::string text;
    for (const auto& item : items) text += (text.empty() ? "" : ",") + item;
    return text;
  };
  std::printf("WHOAMI outside=%s ids=%zu servers=%s tokens=%s\n",
              clupy::this_task() ? "task" : "none", ids.size(), joined(servers).c_str(),
              joined(tokens).c_str());
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "no-init") {
    try {
      clupy::parallel(square)(1);
      std::printf("NO ERROR\n");
    } catch (const clupy::Error& e) {
      std::printf("ERROR %s\n", e.what());
    }
    return 0;
  }
  clupy::init(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string mode = argc > 1 ? argv[1] : "";
  auto arg = [&](int i, int fallback) { return argc > i ? std::atoi(argv[i]) : fallback; };
  try {
    if (mode == "sequential") return scenario_sequential(arg(2, 10'000));
    if (mode == "failures") return scenario_failures();
    if (mode == "chatty") return scenario_chatty(arg(2, 20'000));
    if (mode == "crashmix") return scenario_crash_mix(arg(2, 300), arg(3, 25));
    if (mode == "long") return scenario_long(arg(2, 100), arg(3, 50), arg(4, -1));
    if (mode == "spread")
      return scenario_spread(static_cast<unsigned>(arg(2, 0)), static_cast<unsigned>(arg(3, 0)),
                             arg(4, 100), arg(5, 5));
    if (mode == "behind-long") return scenario_behind_long(arg(2, 1500), arg(3, 12), arg(4, 50));
    if (mode == "types") return scenario_types();
    if (mode == "output") return scenario_output();
    if (mode == "cancel") return scenario_cancel(arg(2, 300), argc > 3 ? argv[3] : "");
    if (mode == "payload") return scenario_payload(arg(2, 100), arg(3, 1));
    if (mode == "bigecho") return scenario_big_echo();
    if (mode == "bigcrash") return scenario_big_crash();
    if (mode == "progress") return scenario_progress(arg(2, 20), arg(3, 100));
    if (mode == "whoami") return scenario_whoami(arg(2, 20));
  } catch (const std::exception& e) {
    std::printf("ERROR %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "unknown scenario '%s'\n", mode.c_str());
  return 2;
}
