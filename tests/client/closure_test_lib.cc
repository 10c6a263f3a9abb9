#include "closure_test_lib.hpp"

namespace clupy::test {

int lib_cube(int x) { return x * x * x; }

detail::EncodedCall lib_scaled_call(int factor, int bias, int x) {
  return detail::encode_call([factor, bias](int v) { return v * factor + bias; }, x);
}

}  // namespace clupy::test
