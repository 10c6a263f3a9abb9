// Must NOT compile (see check_compile_fails.cmake); with CLUPY_COMPILE_FAIL_CONTROL defined,
// the valid twin must compile, which proves that the failure comes from CluPy's check.
#include <string>

#include "clupy/detail/call.hpp"

int square(int x) { return x * x; }

int main() {
  int limit = 2;
#ifdef CLUPY_COMPILE_FAIL_CONTROL
  auto call = clupy::detail::encode_call([n = 2](int x) { return x * n; }, 3);
#else
  auto call = clupy::detail::encode_call([&limit](int x) { return x * limit; }, 3);
#endif
  return static_cast<int>(call.arguments.size());
}
