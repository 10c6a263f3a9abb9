#include "common/frame.hpp"

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

FrameDecoder::Status FrameDecoder::next(wire::Envelope& message) {
  const std::size_t available = buffer_.size() - consumed_;
  if (available < kFrameHeaderSize) return Status::kNeedMore;
  const auto* header = reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_);
  const std::size_t size = (std::size_t{header[0]} << 24) | (std::size_t{header[1]} << 16) |
                           (std::size_t{header[2]} << 8) | std::size_t{header[3]};
  if (size > max_frame_size_) {
    announced_size_ = size;
    return Status::kOversized;
  }
  if (available < kFrameHeaderSize + size) return Status::kNeedMore;
  const char* body = buffer_.data() + consumed_ + kFrameHeaderSize;
  const bool parsed = message.ParseFromArray(body, static_cast<int>(size));
  consumed_ += kFrameHeaderSize + size;
  // Frames are parsed in place; the consumed prefix is dropped once it dominates the buffer so
  // memory stays bounded without moving bytes on every frame.
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > (64u << 10) && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  if (!parsed) return Status::kUnparsable;
  return Status::kFrame;
}

const char* to_string(FrameDecoder::Status status) {
  switch (status) {
    case FrameDecoder::Status::kFrame: return "frame";
    case FrameDecoder::Status::kNeedMore: return "need more bytes";
    case FrameDecoder::Status::kOversized: return "oversized frame";
    case FrameDecoder::Status::kUnparsable: return "unparsable frame";
  }
  return "unknown";
}

}  // namespace clupy::common
