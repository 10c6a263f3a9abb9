// Lowercase hexadecimal text of bytes: digests, ids, tokens. The one encoder every folder uses.
#pragma once

#include <string>
#include <string_view>

namespace clupy::base {

// Two lowercase hex digits per byte, in order. Thread-safe (no state).
std::string to_hex(std::string_view bytes);

}  // namespace clupy::base
