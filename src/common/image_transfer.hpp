// Sending a program image as ImageChunk messages: the client uploads its executable to the
// master this way, and the master serves servers' fetches the same way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/connection.hpp"

namespace clupy::common {

inline constexpr std::size_t kImageChunkSize = 1u << 20;

// Queues the whole file as ImageChunk messages on `connection` (the last one has last=true).
// Returns the number of bytes sent, or nullopt if the file cannot be read.
std::optional<std::uint64_t> send_image(Connection& connection, const std::string& path,
                                        const std::string& image_sha256);

}  // namespace clupy::common
