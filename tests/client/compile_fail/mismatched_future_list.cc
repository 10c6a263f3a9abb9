// Must NOT compile (see check_compile_fails.cmake): a std::vector<Future<int>> passed where the
// function takes one int. With CLUPY_COMPILE_FAIL_CONTROL defined, the valid twin (a function
// taking std::vector<int>) must compile, which proves that the failure comes from CluPy's check.
#include <vector>

#include "clupy/parallel.hpp"

#ifdef CLUPY_COMPILE_FAIL_CONTROL
long total(const std::vector<int>& values) { return static_cast<long>(values.size()); }
#else
long total(int value) { return value; }
#endif

int main() {
  std::vector<clupy::Future<int>> inputs(3);
  auto result = clupy::parallel(total)(inputs);
  return result.valid() ? 0 : 1;
}
