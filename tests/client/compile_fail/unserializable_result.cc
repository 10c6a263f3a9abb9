// Must NOT compile (see check_compile_fails.cmake); with CLUPY_COMPILE_FAIL_CONTROL defined,
// the valid twin must compile, which proves that the failure comes from CluPy's check.
#include <string>

#include "clupy/detail/call.hpp"

int square(int x) { return x * x; }
static int kCell = 0;
int* address_of(int) { return &kCell; }

int main() {
#ifdef CLUPY_COMPILE_FAIL_CONTROL
  auto call = clupy::detail::encode_call(square, 3);
#else
  auto call = clupy::detail::encode_call(address_of, 3);
#endif
  return static_cast<int>(call.arguments.size());
}
