// A call's function name, read from its bytes for every finished task (the dashboard's
// per-function figures) without decoding the rest. Mirrors detail::serialize_call's layout (an
// array of 8 whose last element is function_name); bytes of any other shape are given to
// detail::parse_call_view, so a change of the format costs speed, not correctness
// (tests/master/telemetry_test.cc compares both).
#pragma once

#include <string>
#include <string_view>

namespace clupy::master {

// A view into `call`, or into `fallback` when only the full decoder could read it. Throws
// detail::DecodeError when neither can.
std::string_view call_function_name(std::string_view call, std::string& fallback);

}  // namespace clupy::master
