// Framing: each frame is a 4-byte big-endian length followed by that many bytes of one
// serialized wire::Envelope, optionally followed by an attachment: raw bytes that belong to the
// envelope's one call or outcome field (attachment_slot in batches.hpp), so that large payloads are
// neither parsed nor serialized by protobuf but read straight into their final buffer and written
// from where they lie. docs/protocol.md has the layout. This file does no I/O, so it is tested with
// plain byte strings.
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
// A frame with an attachment has a second word in its header: the attachment's length.
inline constexpr std::size_t kAttachedFrameHeaderSize = 8;
// The top bit of the first header word says that an attachment follows the body.
inline constexpr std::uint32_t kAttachmentFlag = 0x8000'0000u;
inline constexpr std::size_t kDefaultMaxFrameSize = 64u << 20;
// The largest frame an acceptor takes from a peer that has not proved the token yet: a Hello or
// an AuthProof is a few hundred bytes.
inline constexpr std::size_t kHandshakeMaxFrameSize = 64u << 10;
// Payloads at least this big travel as attachments (when the peer reads them): below it the
// copies protobuf makes cost less than a frame of their own.
inline constexpr std::size_t kAttachmentThreshold = 64u << 10;

// Appends one frame holding `message` to `out`. Returns false (and leaves `out` unchanged) when
// the serialized message exceeds `max_frame_size`.
bool append_frame(const wire::Envelope& message, std::string& out,
                  std::size_t max_frame_size = kDefaultMaxFrameSize);

// Appends the header and body of a frame whose attachment of `attachment_size` bytes the caller
// writes right after them (the attachment itself is not copied here). `message`'s attachment
// slot (below) must be empty. Returns false (and leaves `out` unchanged) when the body or the
// attachment exceeds `max_frame_size`.
bool append_attached_frame(const wire::Envelope& message, std::size_t attachment_size,
                           std::string& out, std::size_t max_frame_size = kDefaultMaxFrameSize);

// Splits a byte stream into frames. Bytes come in either by feed() (a copy, in any split) or,
// without a copy, by reading straight into prepare() and then commit(): a frame whose header has
// arrived gets room for its whole body, so a large frame lands in one buffer in as few reads as
// the socket allows and is parsed where it lies; an attachment is read into a string of its own,
// which next() then moves into its field. Complete frames come out of next() in order.
class FrameDecoder {
 public:
  enum class Status { kFrame, kNeedMore, kOversized, kUnparsable, kBadAttachment };

  explicit FrameDecoder(std::size_t max_frame_size = kDefaultMaxFrameSize)
      : max_frame_size_(max_frame_size) {}

  // Applies to frames whose header has not been read yet.
  void set_max_frame_size(std::size_t max_frame_size) { max_frame_size_ = max_frame_size; }

  void feed(std::string_view bytes);

  // Where the next bytes of the stream go. While an attachment is being received: exactly the
  // rest of it, in its own string. Otherwise free space at the end of the buffer: at least
  // `min_read` bytes, and at least the rest of the frame's body when its header is in (never
  // more than the frame size limit allows). Valid until the next call of any non-const member.
  // Write into it, then commit() what was written.
  std::span<char> prepare(std::size_t min_read);
  void commit(std::size_t written);

  // Parses the next complete frame into `message`, its attachment (if any) moved into the slot.
  // kOversized, kUnparsable and kBadAttachment are final: the stream cannot be resynchronized and
  // the connection must be closed; error() says why.
  Status next(wire::Envelope& message);

  // The length announced by the last oversized header, for the log line.
  std::size_t announced_size() const { return announced_size_; }
  // Why the last final status was returned, for the log line.
  const std::string& error() const { return error_; }
  // Bytes received but not yet returned by next() (an attachment's included).
  std::size_t buffered() const { return end_ - begin_ + attachment_filled_; }

 private:
  struct Header {
    std::size_t size = 0;  // of the header itself: 4, or 8 with an attachment
    std::size_t body = 0;
    std::optional<std::size_t> attachment;
  };
  // The header of the frame at begin_, when it is complete.
  std::optional<Header> pending_header() const;
  // Releases the buffer when it is empty and larger than worth keeping.
  void consumed(std::size_t bytes);
  // Makes room for `wanted` more bytes after end_: moves the unread bytes to the front and grows
  // the buffer when that is not enough.
  void reserve(std::size_t wanted);

  std::size_t max_frame_size_;
  std::unique_ptr<char[]> data_;  // not value-initialized: every byte is written before it is read
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;  // first unread byte
  std::size_t end_ = 0;    // one past the last byte received
  std::size_t announced_size_ = 0;
  std::string error_;
  // The frame at begin_ has its header and body in the buffer and its attachment arriving here.
  bool in_attachment_ = false;
  bool preparing_attachment_ = false;  // the last prepare() offered the attachment's room
  Header header_;                      // of that frame
  std::string attachment_;
  std::size_t attachment_filled_ = 0;
};

const char* to_string(FrameDecoder::Status status);

}  // namespace clupy::common
