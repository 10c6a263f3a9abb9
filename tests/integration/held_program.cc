// The client program of the data plane's tests (held_results_test.cc: results of at least the
// master's result_threshold stay on the servers that made them; pushed_calls_test.cc: calls of at
// least its push_threshold go from this program straight to the servers). argv[1] selects a
// scenario; it prints the lines the test reads.
#include <chrono>
#include <clupy/clupy.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A value of `size` bytes that says `number`: "<number>|" and padding.
std::string padded(long number, std::size_t size) {
  std::string value = std::to_string(number) + "|";
  if (value.size() < size) value.resize(size, 'x');
  return value;
}
long number_of(const std::string& value) { return std::stol(value.substr(0, value.find('|'))); }

std::string seed(int delay_ms, long size) {
  // The delay lets the whole chain reach the master before its first value exists.
  std::this_thread::sleep_for(milliseconds(delay_ms));
  return padded(0, static_cast<std::size_t>(size));
}
std::string step(const std::string& previous) {
  return padded(number_of(previous) + 1, previous.size());
}
std::string piece(long i, long size) { return padded(i * i, static_cast<std::size_t>(size)); }
std::string combine(const std::string& a, const std::string& b) {
  return padded(number_of(a) + number_of(b), a.size());
}
// Says where it runs (the program prints a task's output prefixed with its server).
std::string announced_piece(long size) {
  std::printf("PIECE_RUNNING\n");
  std::fflush(stdout);
  return padded(7, static_cast<std::size_t>(size));
}
std::string slow_piece(int ms, long size) {
  std::this_thread::sleep_for(milliseconds(ms));
  return padded(1, static_cast<std::size_t>(size));
}

std::string announced_step(const std::string& previous) {
  std::printf("STEP_RUNNING\n");
  std::fflush(stdout);
  return padded(number_of(previous) + 1, previous.size());
}
// Waits (at most two minutes) for the test to create the file at `path`: a small result.
std::string gate_piece(const std::string& path) {
  const auto deadline = std::chrono::steady_clock::now() + seconds(120);
  while (!std::filesystem::exists(path) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(20));
  return padded(1, 16);
}

// Pushed calls: a large argument in, a value out that is large for even `i` and small for odd.
std::string echo(const std::string& big, long i) {
  return padded(number_of(big) + i, i % 2 == 0 ? big.size() : 16);
}
std::string slow_echo(const std::string& big, int ms) {
  std::printf("ECHO_RUNNING\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(milliseconds(ms));
  return padded(number_of(big) + 1, 16);
}

void print_outcome(const char* label, const clupy::Future<std::string>& f) {
  if (!f.completed()) {
    std::printf("%s pending\n", label);
  } else if (f.successful()) {
    std::printf("%s value %ld size %zu\n", label, number_of(f.value()), f.value().size());
  } else {
    const clupy::Failure& e = f.failure();
    std::printf("%s %s|%llu|%s\n", label, std::string(clupy::to_string(e.kind)).c_str(),
                static_cast<unsigned long long>(e.task_id), e.message.c_str());
  }
}

// Waits (at most a minute) for the test to create `name` in the working directory.
bool wait_for_file(const char* name) {
  const auto deadline = std::chrono::steady_clock::now() + seconds(60);
  while (!std::filesystem::exists(name)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

int scenario_chain(int stages, long size) {
  const auto started = std::chrono::steady_clock::now();
  clupy::Future<std::string> value = clupy::parallel(seed)(300, size);
  for (int i = 0; i < stages; ++i) value = clupy::parallel(step)(value);
  value.wait(seconds(200));
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  print_outcome("CHAIN", value);
  std::printf("CHAIN_MS %.1f\n", ms);
  return 0;
}

int scenario_tree(int n, long size) {
  std::vector<clupy::Future<std::string>> level;
  for (long i = 0; i < n; ++i) level.push_back(clupy::parallel(piece)(i, size));
  while (level.size() > 1) {
    std::vector<clupy::Future<std::string>> next;
    for (std::size_t i = 0; i + 1 < level.size(); i += 2)
      next.push_back(clupy::parallel(combine)(level[i], level[i + 1]));
    if (level.size() % 2 == 1) next.push_back(level.back());
    level = std::move(next);  // the program drops the inputs' futures: they are released
  }
  level.front().wait(seconds(200));
  print_outcome("TREE", level.front());
  return 0;
}

// Holds `n` results while the test reads the servers' metrics, then drops them.
int scenario_hold(int n, long size) {
  std::vector<clupy::Future<std::string>> results;
  for (long i = 0; i < n; ++i) results.push_back(clupy::parallel(piece)(i + 1, size));
  long total = 0;
  for (auto& f : results) {
    if (!f.wait(seconds(60)) || !f.successful()) {
      print_outcome("HOLD_FAILED", f);
      return 1;
    }
    total += number_of(f.value());
  }
  std::printf("HELD %ld\n", total);
  if (!wait_for_file("drop")) return 1;
  results.clear();
  std::printf("DROPPED\n");
  if (!wait_for_file("exit")) return 1;
  return 0;
}

int scenario_one(long size) {
  clupy::Future<std::string> f = clupy::parallel(piece)(3L, size);
  f.wait(seconds(60));
  print_outcome("ONE", f);
  return 0;
}

// A dependent given a Future whose value this program already fetched: it names the held
// result, and the value does not travel back.
int scenario_after(long size) {
  clupy::Future<std::string> a = clupy::parallel(piece)(2L, size);
  a.wait(seconds(60));
  clupy::Future<std::string> b = clupy::parallel(combine)(a, a);
  b.wait(seconds(60));
  print_outcome("AFTER", b);
  return 0;
}

// A dependent waits for a slow input while its other input is held by a server the test kills.
int scenario_lost(long size, int retries) {
  const clupy::Options options{.retries = retries};
  clupy::Future<std::string> held = clupy::parallel(announced_piece, options)(size);
  clupy::Future<std::string> slow = clupy::parallel(slow_piece, options)(4000, 16L);
  clupy::Future<std::string> both = clupy::parallel(combine, options)(held, slow);
  both.wait(seconds(60));
  print_outcome("LOST", both);
  return 0;
}

// Lineage (LineageTest): p and q = step(p) run on servers labelled tier=a, q on p's server (its
// holder); r = combine(q, g) waits for g, which waits for the test's gate file, while the test
// kills the server holding q (and p). The program keeps p's Future.
int scenario_pipeline(long size, int retries, const std::string& gate) {
  const clupy::Options tier_a{.retries = retries, .labels = {{"tier", "a"}}};
  clupy::Future<std::string> p = clupy::parallel(announced_piece, tier_a)(size);
  // On the tier=b server, which the test does not kill.
  clupy::Future<std::string> g =
      clupy::parallel(gate_piece, {.retries = retries, .labels = {{"tier", "b"}}})(gate);
  // q's Future is dropped at once: only r needs q's result.
  clupy::Future<std::string> r =
      clupy::parallel(combine, {.retries = retries})(clupy::parallel(announced_step, tier_a)(p), g);
  p.wait(seconds(200));
  print_outcome("P", p);
  r.wait(seconds(200));
  print_outcome("PIPELINE", r);
  return 0;
}

// A Future whose held result is fetched only once the test created the file named by
// CLUPY_TEST_HELD_FETCH_GATE (after it killed the holding server).
int scenario_later(long size) {
  clupy::Future<std::string> p = clupy::parallel(announced_piece)(size);
  p.wait(seconds(200));
  print_outcome("LATER", p);
  return 0;
}

// `n` calls of `size` bytes each (pushed when size is at least the master's push_threshold),
// every `ms` > 0 a slow one; each value checked. Prints "<LABEL> ok <good> of <n>" and each bad
// outcome.
int scenario_echo(const char* label, int n, long size, int ms) {
  std::vector<clupy::Future<std::string>> results;
  for (long i = 0; i < n; ++i) {
    const std::string big = padded(i * 10, static_cast<std::size_t>(size));
    results.push_back(ms > 0 ? clupy::parallel(slow_echo)(big, ms) : clupy::parallel(echo)(big, i));
  }
  int good = 0;
  for (long i = 0; i < n; ++i) {
    clupy::Future<std::string>& f = results[static_cast<std::size_t>(i)];
    f.wait(seconds(200));
    const long expected = ms > 0 ? i * 10 + 1 : i * 10 + i;
    const std::size_t expected_size = ms > 0 || i % 2 == 1 ? 16 : static_cast<std::size_t>(size);
    if (f.successful() && number_of(f.value()) == expected && f.value().size() == expected_size)
      ++good;
    else
      print_outcome("BAD", f);
  }
  std::printf("%s ok %d of %d\n", label, good, n);
  return 0;
}

// One slow call whose push waits for CLUPY_TEST_PUSH_GATE's file: with `cancel`, cancelled once
// the test creates the file "cancel"; else waited for, with `retries`.
int scenario_gated(long size, bool cancel, int retries) {
  const std::string big = padded(5, static_cast<std::size_t>(size));
  clupy::Future<std::string> f = clupy::parallel(slow_echo, {.retries = retries})(big, 10);
  if (cancel) {
    if (!wait_for_file("cancel")) return 1;
    std::printf("CANCEL_ASKED %d\n", f.cancel() ? 1 : 0);
  }
  f.wait(seconds(200));
  print_outcome("GATED", f);
  return wait_for_file("exit") ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  clupy::init(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string mode = argc > 1 ? argv[1] : "";
  auto arg = [&](int i, long fallback) { return argc > i ? std::atol(argv[i]) : fallback; };
  try {
    if (mode == "chain") return scenario_chain(static_cast<int>(arg(2, 100)), arg(3, 4 << 20));
    if (mode == "tree") return scenario_tree(static_cast<int>(arg(2, 64)), arg(3, 1 << 20));
    if (mode == "hold") return scenario_hold(static_cast<int>(arg(2, 4)), arg(3, 1 << 20));
    if (mode == "one") return scenario_one(arg(2, 1 << 20));
    if (mode == "lost") return scenario_lost(arg(2, 1 << 20), static_cast<int>(arg(3, -1)));
    if (mode == "pipeline")
      return scenario_pipeline(arg(2, 1 << 20), static_cast<int>(arg(3, -1)),
                               argc > 4 ? argv[4] : "go");
    if (mode == "later") return scenario_later(arg(2, 1 << 20));
    if (mode == "after") return scenario_after(arg(2, 1 << 20));
    if (mode == "echo")
      return scenario_echo("ECHO", static_cast<int>(arg(2, 16)), arg(3, 1 << 20),
                           static_cast<int>(arg(4, 0)));
    if (mode == "gated")
      return scenario_gated(arg(2, 1 << 20), arg(3, 0) != 0, static_cast<int>(arg(4, -1)));
  } catch (const std::exception& e) {
    std::printf("ERROR %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "unknown scenario '%s'\n", mode.c_str());
  return 2;
}
