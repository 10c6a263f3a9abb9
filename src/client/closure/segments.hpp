// The code segments of the objects loaded in this process (main program, shared libraries),
// named by identity so that another process of the same image can find the same code.
#pragma once

#include <cstdint>
#include <string>

#include "clupy/detail/call.hpp"

namespace clupy::detail {

// The address `ref` names in this process, after checking that the object with that identity
// is loaded and that the offset lies in one of its executable segments. Returns 0 and sets
// `error` (a sentence for the user) otherwise.
std::uintptr_t resolve_code(const CodeRef& ref, std::string& error);

}  // namespace clupy::detail
