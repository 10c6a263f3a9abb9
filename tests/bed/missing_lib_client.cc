// A client program linked against libbed_only_here.so, which exists only on the main host.
// With dependency_check (the default) init refuses it, naming the library and the server:
// "REFUSED <message>", exit 3. With CLUPY_DEPENDENCY_CHECK=off its tasks must fail fast on the
// bed's servers with a message naming the library and the server: "FAILURE <task> <failure>"
// per task, "OK <n>" for tasks that ran, "ELAPSED_MS <ms>".
#include <chrono>
#include <clupy/clupy.hpp>
#include <cstdio>
#include <vector>

extern "C" long bed_only_here_twice(long x);

namespace {
long twice(long x) { return bed_only_here_twice(x); }
}  // namespace

int main(int argc, char** argv) {
  try {
    clupy::init(argc, argv);
  } catch (const clupy::Error& e) {
    // dependency_check (not off): no server has the library, so init refuses the program.
    std::printf("REFUSED %s\n", e.what());
    return 3;
  }
  if (clupy::embedded_cluster()) {
    std::printf("no master reached (embedded local cluster): the scenario needs the bed\n");
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  std::vector<clupy::Future<long>> futures;
  for (long i = 0; i < 6; ++i) futures.push_back(clupy::parallel(twice)(i));
  clupy::wait_all(futures, std::chrono::seconds(60));
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  int ok = 0;
  for (size_t i = 0; i < futures.size(); ++i) {
    auto& f = futures[i];
    if (!f.completed())
      std::printf("PENDING %zu\n", i);
    else if (f.successful())
      ++ok;
    else
      std::printf("FAILURE %zu %s\n", i, f.failure().to_string().c_str());
  }
  std::printf("OK %d\nELAPSED_MS %lld\n", ok, static_cast<long long>(elapsed.count()));
  return 0;
}
