// The client program of the futures-as-arguments tests (dataplane_test.cc): its own image is
// what the servers' workers run. argv[1] selects a scenario; it prints the lines the test reads.
#include <chrono>
#include <clupy/clupy.hpp>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A chain's value: "<stage>|" and padding up to `size` bytes.
std::string stage_value(long stage, std::size_t size) {
  std::string value = std::to_string(stage) + "|";
  if (value.size() < size) value.resize(size, 'x');
  return value;
}

std::string chain_seed(int delay_ms, long size) {
  // The delay lets the whole chain reach the master before its first value exists.
  std::this_thread::sleep_for(milliseconds(delay_ms));
  return stage_value(0, static_cast<std::size_t>(size));
}

std::string chain_step(const std::string& previous) {
  const long stage = std::stol(previous.substr(0, previous.find('|')));
  return stage_value(stage + 1, previous.size());
}

long square(long x) { return x * x; }
long add(long a, long b) { return a + b; }
long sum_all(const std::vector<long>& values) {
  return std::accumulate(values.begin(), values.end(), 0L);
}
long sleep_then(int ms, long value) {
  std::this_thread::sleep_for(milliseconds(ms));
  return value;
}
// Says where it runs (the program prints a task's output prefixed with its server), then works.
long announced_slow(long value) {
  std::printf("SEED_RUNNING\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(milliseconds(1500));
  return value;
}
long fails_with(long value) { throw std::runtime_error("input refused " + std::to_string(value)); }

void print_failure(const char* label, const clupy::Future<long>& f) {
  if (!f.completed()) {
    std::printf("%s pending\n", label);
  } else if (f.successful()) {
    std::printf("%s value %ld\n", label, f.value());
  } else {
    const clupy::Failure& e = f.failure();
    std::printf("%s %s|%llu|%s\n", label, std::string(clupy::to_string(e.kind)).c_str(),
                static_cast<unsigned long long>(e.task_id), e.message.c_str());
  }
}

// `stages` tasks each taking the previous one's value; only the last one's value is read here.
int scenario_chain(int stages, long size, int delay_ms) {
  const auto started = std::chrono::steady_clock::now();
  clupy::Future<std::string> value = clupy::parallel(chain_seed)(delay_ms, size);
  for (int i = 0; i < stages; ++i) value = clupy::parallel(chain_step)(value);
  if (!value.wait(seconds(120))) {
    std::printf("CHAIN timeout\n");
    return 1;
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  if (!value.successful()) {
    std::printf("CHAIN failed %s\n", value.failure().to_string().c_str());
    return 1;
  }
  const std::string& v = value.value();
  std::printf("CHAIN stage=%s size=%zu ms=%.1f\n", v.substr(0, v.find('|')).c_str(), v.size(), ms);
  return 0;
}

// A map over `n` inputs, then a tree reduction of their futures, and the same inputs as one
// std::vector<Future<long>> argument.
int scenario_tree(int n) {
  std::vector<clupy::Future<long>> level;
  for (long i = 0; i < n; ++i) level.push_back(clupy::parallel(square)(i));
  const std::vector<clupy::Future<long>> squares = level;
  while (level.size() > 1) {
    std::vector<clupy::Future<long>> next;
    for (std::size_t i = 0; i + 1 < level.size(); i += 2)
      next.push_back(clupy::parallel(add)(level[i], level[i + 1]));
    if (level.size() % 2 == 1) next.push_back(level.back());
    level = std::move(next);
  }
  clupy::Future<long> total = level.front();
  clupy::Future<long> listed = clupy::parallel(sum_all)(squares);
  // A future made in this program (no task behind it) and a plain argument beside futures.
  clupy::Future<long> mixed =
      clupy::parallel(add)(clupy::make_ready_future(1000L), clupy::parallel(square)(3L));
  for (const clupy::Future<long>* f : {&total, &listed, &mixed})
    if (!f->wait(seconds(120))) std::printf("TREE timeout\n");
  print_failure("TREE", total);
  print_failure("LIST", listed);
  print_failure("MIXED", mixed);
  return 0;
}

// A failing input: its dependent, and that one's dependent, fail with kDependency.
int scenario_failing() {
  clupy::Future<long> bad = clupy::parallel(fails_with)(7L);
  clupy::Future<long> first = clupy::parallel(add)(bad, 1L);
  clupy::Future<long> second = clupy::parallel(square)(first);
  for (const clupy::Future<long>* f : {&bad, &first, &second}) f->wait(seconds(60));
  print_failure("INPUT", bad);
  print_failure("FIRST", first);
  print_failure("SECOND", second);
  return 0;
}

// Cancelling an input fails its dependent; cancelling a dependent leaves its input alone.
int scenario_cancel() {
  clupy::Future<long> slow = clupy::parallel(sleep_then)(30'000, 5L);
  clupy::Future<long> dependent = clupy::parallel(square)(slow);
  clupy::Future<long> input = clupy::parallel(sleep_then)(300, 6L);
  clupy::Future<long> dropped = clupy::parallel(square)(input);
  // Both dependents reached the master before the cancels below (one flush, in order).
  std::this_thread::sleep_for(milliseconds(100));
  slow.cancel();
  dropped.cancel();
  const bool ended = dependent.wait(seconds(20)) && input.wait(seconds(20));
  print_failure("CANCELLED_INPUT", slow);
  print_failure("DEPENDENT", dependent);
  print_failure("DROPPED", dropped);
  print_failure("KEPT_INPUT", input);
  std::printf("CANCEL ended=%d\n", ended ? 1 : 0);
  return 0;
}

// A chain whose first input's server the test kills while it runs: the input reruns elsewhere
// and the chain waits for it.
int scenario_rerun() {
  clupy::Future<long> value = clupy::parallel(announced_slow)(1L);
  for (int i = 0; i < 10; ++i) value = clupy::parallel(add)(value, 1L);
  value.wait(seconds(120));
  print_failure("RERUN", value);
  return 0;
}

// The test kills the master while a chain waits on it: every future ends, once.
int scenario_master_lost() {
  std::vector<clupy::Future<long>> chain{clupy::parallel(sleep_then)(5'000, 1L)};
  for (int i = 0; i < 5; ++i) chain.push_back(clupy::parallel(add)(chain.back(), 1L));
  // One waits in this program: its input is a future made here, which fails with the loss.
  clupy::Future<long> later = chain.back().then([](long v) { return v; });
  clupy::Future<long> held = clupy::parallel(add)(later, 1L);
  std::printf("SUBMITTED\n");
  int ended = 0, unavailable = 0, dependency = 0, callbacks = 0;
  for (auto& f : chain) f.fail([&](const clupy::Failure&) { ++callbacks; });
  chain.push_back(held);
  for (auto& f : chain) {
    if (!f.wait(seconds(60))) continue;
    ++ended;
    if (!f.successful() && f.failure().kind == clupy::FailureKind::kUnavailable) ++unavailable;
    if (!f.successful() && f.failure().kind == clupy::FailureKind::kDependency) ++dependency;
  }
  std::printf("LOST ended=%d unavailable=%d dependency=%d callbacks=%d\n", ended, unavailable,
              dependency, callbacks);
  return 0;
}

// Inputs held back in this program by max_in_flight: their dependents wait here for them.
int scenario_held() {
  auto limited = clupy::parallel(sleep_then, {.max_in_flight = 1});
  clupy::Future<long> a = limited(200, 20L);
  clupy::Future<long> b = limited(200, 22L);  // held here until a finishes
  clupy::Future<long> sum = clupy::parallel(add)(a, b);
  sum.wait(seconds(60));
  print_failure("HELD", sum);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  clupy::init(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string mode = argc > 1 ? argv[1] : "";
  auto arg = [&](int i, long fallback) { return argc > i ? std::atol(argv[i]) : fallback; };
  try {
    if (mode == "chain")
      return scenario_chain(static_cast<int>(arg(2, 100)), arg(3, 65536),
                            static_cast<int>(arg(4, 300)));
    if (mode == "tree") return scenario_tree(static_cast<int>(arg(2, 64)));
    if (mode == "failing") return scenario_failing();
    if (mode == "cancel") return scenario_cancel();
    if (mode == "held") return scenario_held();
    if (mode == "rerun") return scenario_rerun();
    if (mode == "master-lost") return scenario_master_lost();
  } catch (const std::exception& e) {
    std::printf("ERROR %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "unknown scenario '%s'\n", mode.c_str());
  return 2;
}
