#include "common/image_transfer.hpp"

#include <fstream>

namespace clupy::common {

std::optional<std::uint64_t> send_image(Connection& connection, const std::string& path,
                                        const std::string& image_sha256) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string buffer(kImageChunkSize, '\0');
  std::uint64_t offset = 0;
  while (true) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    if (in.bad()) return std::nullopt;
    wire::Envelope chunk;
    auto* c = chunk.mutable_image_chunk();
    c->set_image_sha256(image_sha256);
    c->set_offset(offset);
    c->set_data(buffer.data(), got);
    c->set_last(got < buffer.size() || in.peek() == std::char_traits<char>::eof());
    connection.send(chunk);
    offset += got;
    if (c->last()) return offset;
  }
}

}  // namespace clupy::common
