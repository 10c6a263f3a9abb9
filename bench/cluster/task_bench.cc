// task_bench: the client side of the cluster benchmarks (docs/benchmarks.md). bench/run.sh
// starts a master and servers, then runs this program against them; servers run this same
// image as their workers. Each mode prints one line of `key=value` pairs, prefixed "RESULT ",
// that bench/report.py aggregates.
//
//   task_bench throughput N          N no-op int->int tasks, first submit to last result
//   task_bench roundtrip N           submit one no-op, wait for it; N times; p50/p99 in us
//   task_bench primes LO HI          primes(n) for n in [LO, HI): in process, then on the cluster
//   task_bench payload N BYTES [K]   N tasks taking and returning BYTES bytes each, at most K
//                                    submitted at once (default 32; see payload())
//   task_bench memory N FILE         N outstanding futures (nothing runs them); client RSS;
//                                    holds them until FILE exists
//   task_bench first                 one no-op task (cold start: run.sh times the whole launch)
//   task_bench chain STAGES BYTES R  a chain of tasks, through futures and through the program
//   task_bench tree LEAVES BYTES     a tree reduction of LEAVES values of BYTES each
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <clupy/clupy.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int noop(int x) { return x; }

std::string echo(std::string bytes) { return bytes; }
// One stage of a chain: the previous stage's value, its first byte counting the stages.
std::string chain_stage(const std::string& previous) {
  std::string next = previous;
  if (!next.empty()) ++next[0];
  return next;
}

// A tree reduction's values: BYTES bytes whose first 8 hold a number.
long number_in(const std::string& value) {
  long number = 0;
  std::memcpy(&number, value.data(), sizeof number);
  return number;
}
std::string tree_leaf(long i, long bytes) {
  std::string value(static_cast<std::size_t>(bytes), '\0');
  std::memcpy(value.data(), &i, sizeof i);
  return value;
}
std::string tree_combine(const std::string& a, const std::string& b) {
  std::string value = a;
  const long sum = number_in(a) + number_in(b);
  std::memcpy(value.data(), &sum, sizeof sum);
  return value;
}

// The seed's example function: the prime divisors of n, by trial division (CPU-bound).
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

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Resident set size of this process in bytes (VmRSS of /proc/self/status).
long long rss_bytes() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  return -1;
}

// CPU time (user + system, all threads) of this process, in seconds.
double cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// Fails the run loudly: a benchmark that lost tasks must not print a figure.
template <class T>
bool all_successful(std::vector<clupy::Future<T>>& futures) {
  for (auto& f : futures) {
    if (!f.successful()) {
      std::fprintf(stderr, "task failed: %s\n",
                   f.completed() ? f.failure().to_string().c_str() : "not completed");
      return false;
    }
  }
  return true;
}

// The first task of a job uploads the program image and starts workers; the figures are about
// the steady state, so each mode pays that once before its clock starts.
void warm_up(int tasks) {
  std::vector<clupy::Future<int>> futures;
  for (int i = 0; i < tasks; ++i) futures.push_back(clupy::parallel(noop)(i));
  clupy::wait_all(futures, std::chrono::minutes(2));
}

int throughput(int n) {
  warm_up(100);
  auto task = clupy::parallel(noop);
  std::vector<clupy::Future<int>> futures;
  futures.reserve(static_cast<std::size_t>(n));
  const double cpu_start = cpu_seconds();
  const auto start = Clock::now();
  for (int i = 0; i < n; ++i) futures.push_back(task(i));
  const double submitted = seconds_since(start);
  if (!clupy::wait_all(futures, std::chrono::minutes(10))) {
    std::fprintf(stderr, "throughput: tasks did not finish within 10 minutes\n");
    return 1;
  }
  const double took = seconds_since(start);
  const double cpu = cpu_seconds() - cpu_start;
  if (!all_successful(futures)) return 1;
  for (int i = 0; i < n; ++i) {
    if (futures[static_cast<std::size_t>(i)].value() != i) {
      std::fprintf(stderr, "throughput: task %d returned the wrong value\n", i);
      return 1;
    }
  }
  std::printf(
      "RESULT tasks=%d seconds=%.4f submit_seconds=%.4f tasks_per_s=%.1f "
      "client_us_per_task=%.2f\n",
      n, took, submitted, n / took, 1e6 * cpu / n);
  return 0;
}

int roundtrip(int n) {
  warm_up(100);
  auto task = clupy::parallel(noop);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(n));
  const double cpu_start = cpu_seconds();
  for (int i = 0; i < n; ++i) {
    const auto start = Clock::now();
    const int value = task(i).get();
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    if (value != i) {
      std::fprintf(stderr, "roundtrip: task %d returned %d\n", i, value);
      return 1;
    }
  }
  const double cpu = cpu_seconds() - cpu_start;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) {
    return us[std::min(us.size() - 1, static_cast<std::size_t>(q * us.size()))];
  };
  std::printf(
      "RESULT round_trips=%d p50_us=%.1f p99_us=%.1f min_us=%.1f max_us=%.1f "
      "client_us_per_task=%.2f\n",
      n, at(0.5), at(0.99), us.front(), us.back(), 1e6 * cpu / n);
  return 0;
}

int primes_speedup(int lo, int hi) {
  long long checksum_local = 0, checksum_cluster = 0;
  const auto local_start = Clock::now();
  for (int n = lo; n < hi; ++n) checksum_local += static_cast<long long>(primes(n).size());
  const double local = seconds_since(local_start);

  warm_up(10);
  auto task = clupy::parallel(primes);
  std::vector<clupy::Future<std::vector<int>>> futures;
  // Largest n first: the long tasks start early, so the two slots finish together.
  const auto cluster_start = Clock::now();
  for (int n = hi - 1; n >= lo; --n) futures.push_back(task(n));
  if (!clupy::wait_all(futures, std::chrono::minutes(10)) || !all_successful(futures)) return 1;
  const double cluster = seconds_since(cluster_start);
  for (auto& f : futures) checksum_cluster += static_cast<long long>(f.value().size());
  if (checksum_local != checksum_cluster) {
    std::fprintf(stderr, "primes: cluster results differ from the local ones\n");
    return 1;
  }
  std::printf("RESULT tasks=%d sequential_s=%.3f cluster_s=%.3f speedup=%.3f\n", hi - lo, local,
              cluster, local / cluster);
  return 0;
}

// Tasks in flight are bounded (32 by default) to keep the memory of a run modest: every call
// holds its bytes until its result is back.
int payload(int n, int bytes, int in_flight) {
  warm_up(10);
  auto task = clupy::parallel(echo, {.max_in_flight = static_cast<unsigned>(in_flight)});
  const std::string blob(static_cast<std::size_t>(bytes), 'x');
  std::vector<clupy::Future<std::string>> futures;
  const auto start = Clock::now();
  for (int i = 0; i < n; ++i) futures.push_back(task(blob));
  if (!clupy::wait_all(futures, std::chrono::minutes(3)) || !all_successful(futures)) return 1;
  const double took = seconds_since(start);
  for (auto& f : futures) {
    if (f.value().size() != blob.size()) {
      std::fprintf(stderr, "payload: a result has %zu bytes\n", f.value().size());
      return 1;
    }
  }
  // Bytes in plus bytes out, as for the raw transport's echo.
  const double mb = 2.0 * n * bytes / 1e6;
  std::printf("RESULT tasks=%d bytes=%d in_flight=%d seconds=%.3f mb_per_s=%.1f\n", n, bytes,
              in_flight, took, mb / took);
  return 0;
}

// With no server to run them, the tasks stay queued on the master; run.sh reads the master's
// RSS while this process holds them (it prints READY, then waits for `release` to exist).
int memory(int n, const std::string& release) {
  auto task = clupy::parallel(noop);
  std::vector<clupy::Future<int>> futures;
  futures.reserve(static_cast<std::size_t>(n));
  const long long before = rss_bytes();
  for (int i = 0; i < n; ++i) futures.push_back(task(i));
  const long long after = rss_bytes();
  // The call's own bytes, which the master keeps with each queued task: its budget is counted
  // beyond them. They name the code by segment id and path, so they grow with the build path.
  const std::size_t call_bytes =
      clupy::detail::serialize_call(clupy::detail::encode_call(noop, n)).size();
  std::printf(
      "RESULT futures=%d client_rss_before=%lld client_rss_after=%lld "
      "client_bytes_per_future=%.1f call_bytes=%zu\n",
      n, before, after, static_cast<double>(after - before) / n, call_bytes);
  std::printf("READY\n");
  std::fflush(stdout);
  while (::access(release.c_str(), F_OK) != 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return 0;
}

// A chain of `stages` tasks, each given the previous one's value, timed two ways in the same
// run: through futures as arguments (values stay on the master's side) and through the program
// (each value fetched with get() and passed again). Repeated `rounds` times, alternating.
int chain(int stages, int bytes, int rounds) {
  warm_up(10);
  auto stage = clupy::parallel(chain_stage);
  const std::string seed(static_cast<std::size_t>(bytes), '\0');
  std::vector<double> futures_ms, program_ms;
  for (int round = 0; round < rounds; ++round) {
    auto start = Clock::now();
    clupy::Future<std::string> value = stage(seed);
    for (int i = 1; i < stages; ++i) value = stage(value);
    if (value.get().size() != seed.size() || value.get()[0] != static_cast<char>(stages)) return 1;
    futures_ms.push_back(seconds_since(start) * 1e3);
    start = Clock::now();
    std::string through = stage(seed).get();
    for (int i = 1; i < stages; ++i) through = stage(through).get();
    if (through.size() != seed.size() || through[0] != static_cast<char>(stages)) return 1;
    program_ms.push_back(seconds_since(start) * 1e3);
  }
  std::sort(futures_ms.begin(), futures_ms.end());
  std::sort(program_ms.begin(), program_ms.end());
  const double futures = futures_ms[futures_ms.size() / 2];
  const double program = program_ms[program_ms.size() / 2];
  std::printf(
      "RESULT stages=%d bytes=%d rounds=%d futures_ms=%.1f futures_min_ms=%.1f "
      "futures_max_ms=%.1f program_ms=%.1f program_min_ms=%.1f program_max_ms=%.1f "
      "futures_stage_us=%.0f program_stage_us=%.0f speedup=%.2f\n",
      stages, bytes, rounds, futures, futures_ms.front(), futures_ms.back(), program,
      program_ms.front(), program_ms.back(), futures * 1e3 / stages, program * 1e3 / stages,
      program / futures);
  return 0;
}

// A tree reduction (benchmark 10, against Dask's in bench/dask_bench.py): `leaves` tasks each
// make a value of `bytes`, then pairs are combined level by level; the program fetches only the
// last value. The program drops each level's futures as it builds the next, so servers free
// what nothing needs any more.
int tree(int leaves, int bytes) {
  warm_up(10);
  auto leaf = clupy::parallel(tree_leaf);
  auto combine = clupy::parallel(tree_combine);
  const auto start = Clock::now();
  std::vector<clupy::Future<std::string>> level;
  for (long i = 0; i < leaves; ++i) level.push_back(leaf(i, static_cast<long>(bytes)));
  while (level.size() > 1) {
    std::vector<clupy::Future<std::string>> next;
    for (std::size_t i = 0; i + 1 < level.size(); i += 2)
      next.push_back(combine(level[i], level[i + 1]));
    if (level.size() % 2 == 1) next.push_back(level.back());
    level = std::move(next);
  }
  const std::string& value = level.front().get();
  const double took = seconds_since(start);
  const long expected = static_cast<long>(leaves) * (leaves - 1) / 2;
  if (value.size() != static_cast<std::size_t>(bytes) || number_in(value) != expected) {
    std::fprintf(stderr, "tree: %zu bytes saying %ld, expected %d saying %ld\n", value.size(),
                 number_in(value), bytes, expected);
    return 1;
  }
  std::printf("RESULT leaves=%d bytes=%d seconds=%.3f\n", leaves, bytes, took);
  return 0;
}

int first() {
  const int value = clupy::parallel(noop)(42).get();
  std::printf("RESULT first_value=%d\n", value);
  return value == 42 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  clupy::init(argc, argv);  // servers' workers serve tasks from here
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string mode = argc > 1 ? argv[1] : "";
  auto arg = [&](int i, int fallback) { return argc > i ? std::atoi(argv[i]) : fallback; };
  try {
    if (mode == "throughput") return throughput(arg(2, 100'000));
    if (mode == "roundtrip") return roundtrip(arg(2, 20'000));
    if (mode == "primes") return primes_speedup(arg(2, 100'000), arg(3, 102'000));
    if (mode == "payload") return payload(arg(2, 1'000), arg(3, 1 << 20), arg(4, 32));
    if (mode == "memory" && argc > 3) return memory(arg(2, 1'000'000), argv[3]);
    if (mode == "first") return first();
    if (mode == "chain") return chain(arg(2, 100), arg(3, 4 << 20), arg(4, 3));
    if (mode == "tree") return tree(arg(2, 256), arg(3, 4 << 20));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "task_bench %s: %s\n", mode.c_str(), e.what());
    return 1;
  }
  std::fprintf(
      stderr,
      "usage: task_bench throughput N | roundtrip N | primes LO HI | payload N BYTES [K] | "
      "memory N FILE | first | chain STAGES BYTES ROUNDS | tree LEAVES BYTES\n");
  return 2;
}
