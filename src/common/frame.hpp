// Framing: each frame is a 4-byte big-endian length followed by that many bytes of one
// serialized wire::Envelope. docs/protocol.md has the layout. This file does no I/O, so it is
// tested with plain byte strings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
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

// Splits a byte stream into frames. Bytes come in either by feed() (a copy, in any split) or,
// without a copy, by reading straight into prepare() and then commit(): a frame whose header has
// arrived gets room for its whole body, so a large frame lands in one buffer in as few reads as
// the socket allows and is parsed where it lies. Complete frames come out of next() in order.
class FrameDecoder {
 public:
  enum class Status { kFrame, kNeedMore, kOversized, kUnparsable };

  explicit FrameDecoder(std::size_t max_frame_size = kDefaultMaxFrameSize)
      : max_frame_size_(max_frame_size) {}

  void feed(std::string_view bytes);

  // Free space at the end of the buffer: at least `min_read` bytes, and at least the rest of the
  // frame being received when its header is in (never more than the frame size limit allows).
  // Valid until the next call of any non-const member. Write into it, then commit() what was
  // written.
  std::span<char> prepare(std::size_t min_read);
  void commit(std::size_t written) { end_ += written; }

  // Parses the next complete frame into `message`. kOversized and kUnparsable are final: the
  // stream cannot be resynchronized and the connection must be closed.
  Status next(wire::Envelope& message);

  // The length announced by the last oversized header, for the log line.
  std::size_t announced_size() const { return announced_size_; }
  std::size_t buffered() const { return end_ - begin_; }

 private:
  // The announced body size of the frame at begin_, when its header is complete.
  std::optional<std::size_t> pending_frame_size() const;
  // Makes room for `wanted` more bytes after end_: moves the unread bytes to the front and grows
  // the buffer when that is not enough.
  void reserve(std::size_t wanted);

  std::size_t max_frame_size_;
  std::unique_ptr<char[]> data_;  // not value-initialized: every byte is written before it is read
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;  // first unread byte
  std::size_t end_ = 0;    // one past the last byte received
  std::size_t announced_size_ = 0;
};

const char* to_string(FrameDecoder::Status status);

}  // namespace clupy::common
