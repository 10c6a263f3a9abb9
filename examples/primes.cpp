// The original CluPy example, in C++: the prime divisors of every n in [100, 200), computed by
// worker processes of the cluster.
#include <chrono>
#include <clupy/clupy.hpp>
#include <cstdio>
#include <vector>

// The prime divisors of n.
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

int main(int argc, char** argv) {
  clupy::init(argc, argv);  // in a worker process, this serves tasks and never returns

  std::vector<clupy::Future<std::vector<int>>> results;
  for (int n = 100; n < 200; ++n)
    results.push_back(clupy::parallel(primes, {.server_count = 10})(n));
  clupy::wait_all(results, std::chrono::seconds(10));

  int n = 100, succeeded = 0;
  for (auto& r : results) {
    if (r.completed()) {
      if (r.successful()) {
        std::printf("primes(%d) =", n);
        for (int p : r.value()) std::printf(" %d", p);
        std::printf("\n");
        ++succeeded;
      } else {
        std::printf("primes(%d) failed: %s\n", n, r.failure().to_string().c_str());
      }
    } else {
      std::printf("primes(%d) did not complete in time\n", n);
    }
    ++n;
  }
  std::printf("%d of %zu tasks succeeded on %s%s\n", succeeded, results.size(),
              clupy::master_url().c_str(),
              clupy::embedded_cluster() ? " (embedded local cluster)" : "");
  return succeeded == static_cast<int>(results.size()) ? 0 : 1;
}
