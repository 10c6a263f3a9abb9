#include "common/frame.hpp"

#include <algorithm>
#include <cstring>

#include "clupy.pb.h"

namespace clupy::common {

bool append_frame(const wire::Envelope& message, std::string& out, std::size_t max_frame_size) {
  const std::size_t size = message.ByteSizeLong();
  if (size > max_frame_size || size > UINT32_MAX) return false;
  const std::size_t start = out.size();
  out.resize(start + kFrameHeaderSize + size);
  auto* header = reinterpret_cast<unsigned char*>(out.data() + start);
  header[0] = static_cast<unsigned char>(size >> 24);
  header[1] = static_cast<unsigned char>(size >> 16);
  header[2] = static_cast<unsigned char>(size >> 8);
  header[3] = static_cast<unsigned char>(size);
  message.SerializeWithCachedSizesToArray(header + kFrameHeaderSize);
  return true;
}

namespace {
// A buffer larger than this is released once it is empty, so one large frame does not pin its
// memory for the connection's life.
constexpr std::size_t kKeptCapacity = 4u << 20;
}  // namespace

std::optional<std::size_t> FrameDecoder::pending_frame_size() const {
  if (end_ - begin_ < kFrameHeaderSize) return std::nullopt;
  const auto* header = reinterpret_cast<const unsigned char*>(data_.get() + begin_);
  return (std::size_t{header[0]} << 24) | (std::size_t{header[1]} << 16) |
         (std::size_t{header[2]} << 8) | std::size_t{header[3]};
}

void FrameDecoder::reserve(std::size_t wanted) {
  if (capacity_ - end_ >= wanted) return;
  const std::size_t unread = end_ - begin_;
  if (capacity_ - unread >= wanted && unread <= capacity_ / 2) {
    std::memmove(data_.get(), data_.get() + begin_, unread);
  } else {
    // Doubling keeps feed()'s appends amortized; past kKeptCapacity a frame gets just its size.
    const std::size_t capacity = std::max(unread + wanted, std::min(2 * capacity_, kKeptCapacity));
    auto grown = std::unique_ptr<char[]>(new char[capacity]);
    if (unread > 0) std::memcpy(grown.get(), data_.get() + begin_, unread);
    data_ = std::move(grown);
    capacity_ = capacity;
  }
  begin_ = 0;
  end_ = unread;
}

void FrameDecoder::feed(std::string_view bytes) {
  reserve(bytes.size());
  std::memcpy(data_.get() + end_, bytes.data(), bytes.size());
  end_ += bytes.size();
}

std::span<char> FrameDecoder::prepare(std::size_t min_read) {
  std::size_t wanted = std::max<std::size_t>(min_read, 1);
  if (auto size = pending_frame_size(); size && *size <= max_frame_size_)
    wanted = std::max(wanted, kFrameHeaderSize + *size - (end_ - begin_));
  reserve(wanted);
  return {data_.get() + end_, capacity_ - end_};
}

FrameDecoder::Status FrameDecoder::next(wire::Envelope& message) {
  const auto size = pending_frame_size();
  if (!size) return Status::kNeedMore;
  if (*size > max_frame_size_) {
    announced_size_ = *size;
    return Status::kOversized;
  }
  if (end_ - begin_ < kFrameHeaderSize + *size) return Status::kNeedMore;
  const char* body = data_.get() + begin_ + kFrameHeaderSize;
  const bool parsed = message.ParseFromArray(body, static_cast<int>(*size));
  begin_ += kFrameHeaderSize + *size;
  if (begin_ == end_) {
    begin_ = end_ = 0;
    if (capacity_ > kKeptCapacity) {
      data_.reset();
      capacity_ = 0;
    }
  }
  if (!parsed) return Status::kUnparsable;
  return Status::kFrame;
}

const char* to_string(FrameDecoder::Status status) {
  switch (status) {
    case FrameDecoder::Status::kFrame:
      return "frame";
    case FrameDecoder::Status::kNeedMore:
      return "need more bytes";
    case FrameDecoder::Status::kOversized:
      return "oversized frame";
    case FrameDecoder::Status::kUnparsable:
      return "unparsable frame";
  }
  return "unknown";
}

}  // namespace clupy::common
