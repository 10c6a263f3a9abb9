// The client program of the test bed's scenarios: it runs on the main host against a master in
// another host, and its own image is what the servers' workers run there. argv[1] picks the
// scenario; it checks every value itself and prints lines the scenario scripts read:
//   HOST <hostname> <tasks>     how many tasks each host ran
//   OUTCOMES <ok> <failed> <never_completed> <completed_twice> <wrong>
//   FAILURE <task> <failure>    the first failures, one line each
//   ELAPSED_MS <ms>             from the first submission to the last outcome
// It exits 0 only when every check of its scenario passed.
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <clupy/clupy.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Placed {
  long value;
  std::string host;
};

std::string hostname() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

long long now_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<long long>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

long expected_value(long i) { return i * i + 7; }

Placed placed(long i) { return {expected_value(i), hostname()}; }

long next_of(long i) { return i + 1; }

// count no-op tasks, all in flight at once: prints THROUGHPUT (tasks/s) and OUTCOMES.
int noop_throughput(long count) {
  std::vector<clupy::Future<long>> futures;
  futures.reserve(static_cast<std::size_t>(count));
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < count; ++i) futures.push_back(clupy::parallel(next_of)(i));
  clupy::wait_all(futures, std::chrono::seconds(300));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  long ok = 0, failed = 0, never = 0, wrong = 0;
  for (long i = 0; i < count; ++i) {
    auto& f = futures[static_cast<std::size_t>(i)];
    if (!f.completed())
      ++never;
    else if (!f.successful())
      ++failed;
    else if (f.value() != i + 1)
      ++wrong;
    else
      ++ok;
  }
  std::printf("THROUGHPUT %.0f\nOUTCOMES %ld %ld %ld 0 %ld\n", static_cast<double>(count) / seconds,
              ok, failed, never, wrong);
  return ok == count ? 0 : 1;
}

// count calls one after another: prints the round trip's median, min and max in microseconds.
int sequential_round_trips(long count) {
  std::vector<long> us;
  for (long i = 0; i < count; ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (clupy::parallel(next_of)(i).get() != i + 1) return 1;
    us.push_back(static_cast<long>(std::chrono::duration_cast<std::chrono::microseconds>(
                                       std::chrono::steady_clock::now() - start)
                                       .count()));
  }
  std::sort(us.begin(), us.end());
  std::printf("RTT_US %ld %ld %ld\n", us[us.size() / 2], us.front(), us.back());
  return 0;
}

// Sleeps ms, then appends "task host pid start_us end_us master_token" to the shared history
// (one write of one line with O_APPEND: lines from many hosts never interleave) and returns where
// it ran. master_token: the fencing token of the master that dispatched this execution.
struct SlowArgs {
  long task;
  int ms;
};
Placed slow_recorded(SlowArgs args) {
  const long long start = now_us();
  std::this_thread::sleep_for(std::chrono::milliseconds(args.ms));
  const long long end = now_us();
  const std::string host = hostname();
  char line[256];
  const auto task = clupy::this_task();
  const long long master_token = task ? static_cast<long long>(task->master_fencing_token) : -1;
  const int n = std::snprintf(line, sizeof line, "%ld %s %d %lld %lld %lld\n", args.task,
                              host.c_str(), static_cast<int>(::getpid()), start, end, master_token);
  if (const char* history = std::getenv("BED_HISTORY")) {
    const int fd = ::open(history, O_WRONLY | O_APPEND | O_CREAT, 0666);
    if (fd >= 0) {
      if (::write(fd, line, static_cast<size_t>(n)) != n) std::perror("history");
      ::close(fd);
    }
  }
  return {expected_value(args.task), host};
}

// The same function as examples/primes, run sequentially to give the reference output.
std::vector<int> primes(int n) {
  std::vector<int> divisors;
  for (int d = 2; d <= n / 2; ++d)
    if (n % d == 0) divisors.push_back(d);
  std::vector<int> result;
  for (int d : divisors) {
    bool prime = true;
    for (int od : divisors)
      if (od != d && d % od == 0) prime = false;
    if (prime) result.push_back(d);
  }
  return result;
}

int primes_sequential() {
  for (int n = 100; n < 200; ++n) {
    std::printf("primes(%d) =", n);
    for (int p : primes(n)) std::printf(" %d", p);
    std::printf("\n");
  }
  return 0;
}

// Counts each future's outcomes through its callbacks, so a second completion would be seen.
struct Tally {
  std::vector<std::atomic<int>> completions;
  std::vector<std::string> hosts;
  std::vector<std::string> failures;
  std::atomic<long> wrong{0};
  explicit Tally(size_t n) : completions(n), hosts(n), failures(n) {}
};

// submit(i) gives task i's Future<R>; check(i, value) says whether its value is right and
// host_of(value) where it ran.
template <typename R, typename Submit, typename Check, typename HostOf>
int run_and_check(size_t count, std::chrono::seconds deadline, size_t max_failures_ok,
                  Submit&& submit, Check check, HostOf host_of) {
  auto tally = std::make_shared<Tally>(count);
  const auto start = std::chrono::steady_clock::now();
  std::vector<clupy::Future<R>> futures;
  futures.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    futures.push_back(submit(static_cast<long>(i)));
    futures.back()
        .succeed([tally, i, check, host_of](const R& value) {
          if (!check(static_cast<long>(i), value)) ++tally->wrong;
          tally->hosts[i] = host_of(value);
          ++tally->completions[i];
        })
        .fail([tally, i](const clupy::Failure& f) {
          tally->failures[i] = f.to_string();
          ++tally->completions[i];
        });
  }
  clupy::wait_all(futures, deadline);
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  // Late deliveries (a second completion) would show up here.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  long ok = 0, failed = 0, never = 0, twice = 0;
  std::map<std::string, long> per_host;
  int printed = 0;
  for (size_t i = 0; i < count; ++i) {
    const int c = tally->completions[i].load();
    if (c == 0) ++never;
    if (c > 1) ++twice;
    if (c >= 1 && tally->failures[i].empty()) {
      ++ok;
      ++per_host[tally->hosts[i]];
    } else if (c >= 1) {
      ++failed;
      if (printed++ < 5) std::printf("FAILURE %zu %s\n", i, tally->failures[i].c_str());
    }
  }
  for (const auto& [host, n] : per_host) std::printf("HOST %s %ld\n", host.c_str(), n);
  std::printf("OUTCOMES %ld %ld %ld %ld %ld\n", ok, failed, never, twice, tally->wrong.load());
  std::printf("ELAPSED_MS %lld\n", static_cast<long long>(elapsed.count()));
  std::fflush(stdout);
  const bool all_once = never == 0 && twice == 0 && tally->wrong == 0;
  return all_once && static_cast<size_t>(failed) <= max_failures_ok ? 0 : 1;
}

template <typename F>
int run_and_report(size_t count, std::chrono::seconds deadline, size_t max_failures_ok,
                   F&& submit) {
  return run_and_check<Placed>(
      count, deadline, max_failures_ok, std::forward<F>(submit),
      [](long i, const Placed& p) { return p.value == expected_value(i); },
      [](const Placed& p) { return p.host; });
}

// Large calls and large results: task i's call carries `payload(i, bytes)` (at or above the
// master's push_threshold, so the program pushes it to its server) and its result is that
// payload reversed (at or above result_threshold, so it is held on the server that made it).
struct EchoArgs {
  long task;
  std::string payload;
};
struct Echoed {
  long task;
  std::string payload;
  std::string host;
};

std::string payload(long task, size_t bytes) {
  std::string s(bytes, '\0');
  for (size_t k = 0; k < bytes; ++k)
    s[k] = static_cast<char>((static_cast<size_t>(task) * 131 + k * 7 + (k >> 12)) & 0xff);
  return s;
}

Echoed reversed_echo(EchoArgs args) {
  std::reverse(args.payload.begin(), args.payload.end());
  return {args.task, std::move(args.payload), hostname()};
}

}  // namespace

int main(int argc, char** argv) {
  clupy::init(argc, argv);  // a worker never returns from here
  const std::string mode = argc > 1 ? argv[1] : "";
  const long count = argc > 2 ? std::atol(argv[2]) : 0;
  if (mode == "primes-sequential") return primes_sequential();
  if (clupy::embedded_cluster()) {
    std::printf("no master reached (embedded local cluster): the scenario needs the bed\n");
    return 2;
  }
  if (mode == "spread") {  // count quick tasks, every one right, exactly once
    return run_and_report(static_cast<size_t>(count), std::chrono::seconds(120), 0,
                          [](long i) { return clupy::parallel(placed)(i); });
  }
  if (mode == "noop") return noop_throughput(count);
  if (mode == "sequential") return sequential_round_trips(count);
  if (mode == "slow") {  // count tasks of argv[3] ms each, recorded in $BED_HISTORY
    const int ms = argc > 3 ? std::atoi(argv[3]) : 100;
    const long deadline_s = argc > 4 ? std::atol(argv[4]) : 120;
    const size_t failures_ok = argc > 5 ? static_cast<size_t>(std::atol(argv[5])) : 0;
    const int retries = argc > 6 ? std::atoi(argv[6]) : 3;
    std::printf("STARTED\n");
    std::fflush(stdout);
    return run_and_report(
        static_cast<size_t>(count), std::chrono::seconds(deadline_s), failures_ok,
        [ms, retries](long i) {
          return clupy::parallel(slow_recorded, {.retries = retries})(SlowArgs{i, ms});
        });
  }
  if (mode == "big-echo") {  // count calls of argv[3] KiB echoed back reversed, each checked
    const size_t bytes = static_cast<size_t>(argc > 3 ? std::atol(argv[3]) : 1024) * 1024;
    const long deadline_s = argc > 4 ? std::atol(argv[4]) : 120;
    return run_and_check<Echoed>(
        static_cast<size_t>(count), std::chrono::seconds(deadline_s), 0,
        [bytes](long i) {
          return clupy::parallel(reversed_echo)(EchoArgs{i, payload(i, bytes)});
        },
        [bytes](long i, const Echoed& e) {
          std::string expected = payload(i, bytes);
          std::reverse(expected.begin(), expected.end());
          return e.task == i && e.payload == expected;
        },
        [](const Echoed& e) { return e.host; });
  }
  std::fprintf(stderr,
               "usage: %s primes-sequential | spread N | noop N | sequential N | slow N MS "
               "[DEADLINE_S [FAILURES_OK [RETRIES]]] | big-echo N KIB [DEADLINE_S]\n",
               argv[0]);
  return 2;
}
