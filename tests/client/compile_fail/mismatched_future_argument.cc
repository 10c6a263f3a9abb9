// Must NOT compile (see check_compile_fails.cmake): a Future<std::string> passed where the
// function takes an int. With CLUPY_COMPILE_FAIL_CONTROL defined, the valid twin (a Future<int>)
// must compile, which proves that the failure comes from CluPy's check.
#include <string>

#include "clupy/parallel.hpp"

int square(int x) { return x * x; }

int main() {
#ifdef CLUPY_COMPILE_FAIL_CONTROL
  clupy::Future<int> input;
#else
  clupy::Future<std::string> input;
#endif
  auto result = clupy::parallel(square)(input);
  return result.valid() ? 0 : 1;
}
