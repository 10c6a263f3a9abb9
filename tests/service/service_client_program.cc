// Calls the published service "calc" from C++ over the cluster protocol
// (clupy::service(...).call), printing what came back for service_cluster_test to check.
#include <clupy/clupy.hpp>
#include <clupy/service.hpp>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  clupy::init(argc, argv);
  auto calc = clupy::service("calc");
  std::vector<clupy::Future<long>> sums;
  for (long i = 0; i < 100; ++i) sums.push_back(calc.call<long>("add", i, 1000L));
  long total = 0;
  for (auto& f : sums) total += f.get();
  std::printf("sum: %ld\n", total);
  auto version = calc.call<int>("version");
  std::printf("version: %d\n", version.get());
  auto failed = calc.call<int>("fail", std::string("from C++"));
  failed.wait(std::chrono::seconds(30));
  std::printf("fail: %s\n", failed.failure().to_string().c_str());
  auto unknown = clupy::service("nope").call<int>("add", 1L, 2L);
  unknown.wait(std::chrono::seconds(30));
  std::printf("unknown: %s\n", unknown.failure().message.c_str());
  return 0;
}
