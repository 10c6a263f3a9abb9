// What the dashboard reads of every finished task, without decoding the rest: a call's function
// name and whether an outcome is a value. They mirror detail::serialize_call's layout (an array
// of 8 whose last element is function_name) and serialize_outcome's (an array of 4: version 1,
// ok, ...); bytes of any other shape go to the full decoders, so a change of the format costs
// speed, not correctness (tests/master/telemetry_test.cc compares both).
#pragma once

#include <string>
#include <string_view>

namespace clupy::master {

// Remembers where the arguments of the last call read began and the bytes before them (version,
// form, code references, closure, name): tasks of one function usually share them, and a call
// starting with the same bytes has its arguments at the same place, so only they are skipped.
struct CallPrefixHint {
  std::string prefix;
};

// A view into `call`, or into `fallback` when only the full decoder could read it. Throws
// detail::DecodeError when neither can. `hint` may be null.
std::string_view call_function_name(std::string_view call, std::string& fallback,
                                    CallPrefixHint* hint = nullptr);

// True when a serialized CallOutcome carries a value, false when it carries a failure (an
// exception the function threw). Throws detail::DecodeError.
bool outcome_is_value(std::string_view outcome);

}  // namespace clupy::master
