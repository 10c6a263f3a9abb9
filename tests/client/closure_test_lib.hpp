// A shared library linked into the cross-process test: its functions and the invoker of its
// lambda live in the library's code segment, not the executable's.
#pragma once

#include "clupy/detail/call.hpp"

namespace clupy::test {

int lib_cube(int x);
// Encodes (x * factor + bias) as a capturing lambda defined and instantiated in the library.
detail::EncodedCall lib_scaled_call(int factor, int bias, int x);

}  // namespace clupy::test
