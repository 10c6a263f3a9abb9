#include "clupy/detail/codec.hpp"

namespace clupy::detail {

msgpack::object_handle unpack_exactly(std::string_view bytes) {
  // Every element takes at least one byte, so no honest container is longer than the input.
  const auto most = static_cast<std::size_t>(bytes.size());
  constexpr std::size_t kMaxDepth = 512;
  const msgpack::unpack_limit limit(most, most, most, most, most, kMaxDepth);
  std::size_t offset = 0;
  // Strings and byte arrays point into `bytes` instead of being copied into the handle's zone:
  // every caller converts the object into owned values while `bytes` is alive, and a large
  // argument or result is then copied once (into its C++ value), not twice.
  const msgpack::unpack_reference_func reference = [](msgpack::type::object_type, std::size_t,
                                                      void*) { return true; };
  msgpack::object_handle handle =
      msgpack::unpack(bytes.data(), bytes.size(), offset, reference, nullptr, limit);
  if (offset != bytes.size()) {
    throw DecodeError(std::to_string(bytes.size() - offset) + " stray byte(s) after the value");
  }
  return handle;
}

bool decode_void(std::string_view bytes, std::string& error) {
  try {
    if (unpack_exactly(bytes).get().type == msgpack::type::NIL) return true;
    error = "expected nil for a void result";
  } catch (const std::exception& e) {
    error = e.what();
  }
  return false;
}

}  // namespace clupy::detail
