// Framing: each frame is a 4-byte big-endian length followed by that many bytes of one
// serialized wire::Envelope. docs/protocol.md has the layout. This file does no I/O, so it is
// tested with plain byte strings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace clupy::wire {
class Envelope;
}

namespace clupy::common {

inline constexpr std::size_t kFrameHeaderSize = 4;
inline constexpr std::size_t kDefaultMaxFrameSize = 64u << 20;

// Appends one frame holding `message` to `out`. Returns false (and leaves `out` unchanged) when
// the serialized message exceeds `max_frame_size`.
bool append_frame(const wire::Envelope& message, std::string& out,
                  std::size_t max_frame_size = kDefaultMaxFrameSize);

// Splits a byte stream into frames. Feed it whatever the socket delivered, in any split;
// complete frames come out of next() in order.
class FrameDecoder {
 public:
  enum class Status { kFrame, kNeedMore, kOversized, kUnparsable };

  explicit FrameDecoder(std::size_t max_frame_size = kDefaultMaxFrameSize)
      : max_frame_size_(max_frame_size) {}

  void feed(std::string_view bytes) { buffer_.append(bytes); }

  // Parses the next complete frame into `message`. kOversized and kUnparsable are final: the
  // stream cannot be resynchronized and the connection must be closed.
  Status next(wire::Envelope& message);

  // The length announced by the last oversized header, for the log line.
  std::size_t announced_size() const { return announced_size_; }
  std::size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::size_t max_frame_size_;
  std::string buffer_;
  std::size_t consumed_ = 0;
  std::size_t announced_size_ = 0;
};

const char* to_string(FrameDecoder::Status status);

}  // namespace clupy::common
