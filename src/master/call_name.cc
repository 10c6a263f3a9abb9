#include "master/call_name.hpp"

#include <cstdint>

#include "clupy/detail/call.hpp"

namespace clupy::master {

namespace {

// Skips one msgpack value at `at`; false when the bytes end first or it is not msgpack. Calls
// nest a few levels at most: deeper is malformed.
bool skip_value(std::string_view bytes, std::size_t& at, int depth = 0) {
  if (at >= bytes.size() || depth > 8) return false;
  const auto byte = static_cast<unsigned char>(bytes[at++]);
  const auto big_endian = [&](int width, std::uint64_t& value) {
    if (bytes.size() - at < static_cast<std::size_t>(width)) return false;
    value = 0;
    for (int i = 0; i < width; ++i) value = value << 8 | static_cast<unsigned char>(bytes[at++]);
    return true;
  };
  const auto skip_bytes = [&](std::uint64_t count) {
    if (bytes.size() - at < count) return false;
    at += static_cast<std::size_t>(count);
    return true;
  };
  const auto skip_items = [&](std::uint64_t count) {
    for (std::uint64_t i = 0; i < count; ++i)
      if (!skip_value(bytes, at, depth + 1)) return false;
    return true;
  };
  std::uint64_t n = 0;
  if (byte <= 0x7f || byte >= 0xe0 || byte == 0xc0 || byte == 0xc2 || byte == 0xc3) return true;
  if (byte >= 0xa0 && byte <= 0xbf) return skip_bytes(byte & 0x1f);
  if (byte >= 0x90 && byte <= 0x9f) return skip_items(byte & 0x0f);
  if (byte >= 0x80 && byte <= 0x8f) return skip_items(2 * (byte & 0x0f));
  switch (byte) {
    case 0xcc:
    case 0xd0:
      return skip_bytes(1);
    case 0xcd:
    case 0xd1:
      return skip_bytes(2);
    case 0xce:
    case 0xd2:
    case 0xca:
      return skip_bytes(4);
    case 0xcf:
    case 0xd3:
    case 0xcb:
      return skip_bytes(8);
    case 0xd9:
    case 0xc4:
      return big_endian(1, n) && skip_bytes(n);
    case 0xda:
    case 0xc5:
      return big_endian(2, n) && skip_bytes(n);
    case 0xdb:
    case 0xc6:
      return big_endian(4, n) && skip_bytes(n);
    case 0xdc:
      return big_endian(2, n) && skip_items(n);
    case 0xdd:
      return big_endian(4, n) && skip_items(n);
    case 0xde:
      return big_endian(2, n) && skip_items(2 * n);
    case 0xdf:
      return big_endian(4, n) && skip_items(2 * n);
    default:
      return false;  // extension types: not in a call
  }
}

// The string that is the last of the 8 elements, when the bytes have that shape.
bool fast_name(std::string_view bytes, std::string_view& name, CallPrefixHint* hint) {
  if (bytes.empty() || static_cast<unsigned char>(bytes[0]) != 0x98) return false;
  std::size_t at = 1;
  if (hint != nullptr && !hint->prefix.empty() && bytes.starts_with(hint->prefix)) {
    at = hint->prefix.size();
  } else {
    for (int i = 0; i < 6; ++i)
      if (!skip_value(bytes, at)) return false;
    if (hint != nullptr) hint->prefix.assign(bytes.substr(0, at <= 256 ? at : 0));
  }
  if (!skip_value(bytes, at)) return false;  // the arguments
  const std::size_t start = at;
  if (!skip_value(bytes, at) || at != bytes.size()) return false;
  const auto tag = static_cast<unsigned char>(bytes[start]);
  std::size_t header = 0;
  if (tag >= 0xa0 && tag <= 0xbf)
    header = 1;
  else if (tag == 0xd9)
    header = 2;
  else if (tag == 0xda)
    header = 3;
  else if (tag == 0xdb)
    header = 5;
  else
    return false;
  name = bytes.substr(start + header, at - start - header);
  return true;
}

}  // namespace

std::string_view call_function_name(std::string_view call, std::string& fallback,
                                    CallPrefixHint* hint) {
  std::string_view name;
  if (fast_name(call, name, hint)) return name;
  fallback = detail::parse_call_view(call).function_name;
  return fallback;
}

bool outcome_is_value(std::string_view outcome) {
  if (outcome.size() > 3 && static_cast<unsigned char>(outcome[0]) == 0x94 && outcome[1] == 0x01) {
    const auto ok = static_cast<unsigned char>(outcome[2]);
    if (ok == 0xc3) return true;  // the common case: nothing else is read
    if (ok == 0xc2) return false;
  }
  return detail::parse_outcome_view(outcome).ok;
}

}  // namespace clupy::master
