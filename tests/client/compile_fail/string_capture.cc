// Must NOT compile (see check_compile_fails.cmake); with CLUPY_COMPILE_FAIL_CONTROL defined,
// the valid twin must compile, which proves that the failure comes from CluPy's check.
#include <string>

#include "clupy/detail/call.hpp"

int square(int x) { return x * x; }

int main() {
#ifdef CLUPY_COMPILE_FAIL_CONTROL
  auto call = clupy::detail::encode_call([n = 2](int x) { return x * n; }, 3);
#else
  auto call = clupy::detail::encode_call(
      [s = std::string("ab")](int x) { return x + static_cast<int>(s.size()); }, 3);
#endif
  return static_cast<int>(call.arguments.size());
}
