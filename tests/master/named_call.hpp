// Calls for the scheduler's unit tests: what a client would submit for a named function.
#pragma once

#include <string>

#include "clupy/detail/call.hpp"

namespace clupy::master::test {

// A call of the named function `f` with `arguments` (a msgpack array, nils for futures).
inline std::string call_with(std::string arguments) {
  detail::EncodedCall call;
  call.form = detail::CallForm::kNamed;
  call.name = "f";
  call.function_name = "f";
  call.arguments = std::move(arguments);
  return detail::serialize_call(call);
}

}  // namespace clupy::master::test
