#include "common/frame.hpp"

#include <algorithm>
#include <cstring>

#include "clupy.pb.h"
#include "common/batches.hpp"

namespace clupy::common {

namespace {

void put_word(unsigned char* at, std::uint32_t word) {
  at[0] = static_cast<unsigned char>(word >> 24);
  at[1] = static_cast<unsigned char>(word >> 16);
  at[2] = static_cast<unsigned char>(word >> 8);
  at[3] = static_cast<unsigned char>(word);
}

std::uint32_t get_word(const char* at) {
  const auto* b = reinterpret_cast<const unsigned char*>(at);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         std::uint32_t{b[3]};
}

// A buffer larger than this is released once it is empty, so one large frame does not pin its
// memory for the connection's life.
constexpr std::size_t kKeptCapacity = 4u << 20;

}  // namespace

bool append_frame(const wire::Envelope& message, std::string& out, std::size_t max_frame_size) {
  const std::size_t size = message.ByteSizeLong();
  // The top bit of the length is the attachment flag, so a body never reaches it.
  if (size > max_frame_size || size >= kAttachmentFlag) return false;
  const std::size_t start = out.size();
  out.resize(start + kFrameHeaderSize + size);
  auto* header = reinterpret_cast<unsigned char*>(out.data() + start);
  put_word(header, static_cast<std::uint32_t>(size));
  message.SerializeWithCachedSizesToArray(header + kFrameHeaderSize);
  return true;
}

bool append_attached_frame(const wire::Envelope& message, std::size_t attachment_size,
                           std::string& out, std::size_t max_frame_size) {
  const std::size_t size = message.ByteSizeLong();
  if (size > max_frame_size || size >= kAttachmentFlag) return false;
  if (attachment_size > max_frame_size || attachment_size > UINT32_MAX) return false;
  const std::size_t start = out.size();
  out.resize(start + kAttachedFrameHeaderSize + size);
  auto* header = reinterpret_cast<unsigned char*>(out.data() + start);
  put_word(header, static_cast<std::uint32_t>(size) | kAttachmentFlag);
  put_word(header + kFrameHeaderSize, static_cast<std::uint32_t>(attachment_size));
  message.SerializeWithCachedSizesToArray(header + kAttachedFrameHeaderSize);
  return true;
}

std::optional<FrameDecoder::Header> FrameDecoder::pending_header() const {
  const std::size_t available = end_ - begin_;
  if (available < kFrameHeaderSize) return std::nullopt;
  const std::uint32_t word = get_word(data_.get() + begin_);
  Header header;
  header.body = word & ~kAttachmentFlag;
  if ((word & kAttachmentFlag) == 0) {
    header.size = kFrameHeaderSize;
    return header;
  }
  if (available < kAttachedFrameHeaderSize) return std::nullopt;
  header.size = kAttachedFrameHeaderSize;
  header.attachment = get_word(data_.get() + begin_ + kFrameHeaderSize);
  return header;
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
  if (in_attachment_) {
    const std::size_t take = std::min(bytes.size(), attachment_.size() - attachment_filled_);
    std::memcpy(attachment_.data() + attachment_filled_, bytes.data(), take);
    attachment_filled_ += take;
    bytes.remove_prefix(take);
  }
  if (bytes.empty()) return;
  reserve(bytes.size());
  std::memcpy(data_.get() + end_, bytes.data(), bytes.size());
  end_ += bytes.size();
}

std::span<char> FrameDecoder::prepare(std::size_t min_read) {
  if (in_attachment_ && attachment_filled_ < attachment_.size()) {
    // Exactly the rest of the attachment: no read can run past it into the next frame.
    preparing_attachment_ = true;
    return {attachment_.data() + attachment_filled_, attachment_.size() - attachment_filled_};
  }
  preparing_attachment_ = false;
  std::size_t wanted = std::max<std::size_t>(min_read, 1);
  if (auto header = pending_header(); header && header->body <= max_frame_size_)
    wanted = std::max(wanted, header->size + header->body - (end_ - begin_));
  reserve(wanted);
  return {data_.get() + end_, capacity_ - end_};
}

void FrameDecoder::commit(std::size_t written) {
  if (preparing_attachment_) {
    attachment_filled_ += written;
  } else {
    end_ += written;
  }
  preparing_attachment_ = false;
}

void FrameDecoder::consumed(std::size_t bytes) {
  begin_ += bytes;
  if (begin_ == end_) {
    begin_ = end_ = 0;
    if (capacity_ > kKeptCapacity) {
      data_.reset();
      capacity_ = 0;
    }
  }
}

FrameDecoder::Status FrameDecoder::next(wire::Envelope& message) {
  if (!in_attachment_) {
    const auto header = pending_header();
    if (!header) return Status::kNeedMore;
    if (header->body > max_frame_size_) {
      announced_size_ = header->body;
      error_ = "oversized frame: " + std::to_string(header->body) + " bytes announced, limit " +
               std::to_string(max_frame_size_);
      return Status::kOversized;
    }
    // Refused before a byte of it is allocated, like an oversized body.
    if (header->attachment && *header->attachment > max_frame_size_) {
      announced_size_ = *header->attachment;
      error_ = "oversized attachment: " + std::to_string(*header->attachment) +
               " bytes announced, limit " + std::to_string(max_frame_size_);
      return Status::kOversized;
    }
    const std::size_t framed = header->size + header->body;
    if (end_ - begin_ < framed) return Status::kNeedMore;
    if (header->attachment) {
      // The body stays in the buffer until the attachment is complete. Bytes that arrived
      // after the body in the same reads are the attachment's start: moved to its string, and
      // whatever follows it (the next frames) closes up behind the body.
      header_ = *header;
      in_attachment_ = true;
      attachment_.resize(*header->attachment);
      char* after_body = data_.get() + begin_ + framed;
      const std::size_t overflow = end_ - (begin_ + framed);
      const std::size_t take = std::min(overflow, attachment_.size());
      std::memcpy(attachment_.data(), after_body, take);
      std::memmove(after_body, after_body + take, overflow - take);
      end_ -= take;
      attachment_filled_ = take;
    }
  }
  if (in_attachment_ && attachment_filled_ < attachment_.size()) return Status::kNeedMore;

  const char* body = data_.get() + begin_ + (in_attachment_ ? header_.size : kFrameHeaderSize);
  const std::size_t body_size =
      in_attachment_ ? header_.body : get_word(data_.get() + begin_) & ~kAttachmentFlag;
  const std::size_t header_size = in_attachment_ ? header_.size : kFrameHeaderSize;
  const bool parsed = message.ParseFromArray(body, static_cast<int>(body_size));
  consumed(header_size + body_size);
  if (!in_attachment_) {
    if (!parsed) {
      error_ = "unparsable frame (not a CluPy envelope)";
      return Status::kUnparsable;
    }
    return Status::kFrame;
  }
  in_attachment_ = false;
  std::string attachment = std::move(attachment_);
  attachment_ = std::string();
  attachment_filled_ = 0;
  if (!parsed) {
    error_ = "unparsable frame (not a CluPy envelope)";
    return Status::kUnparsable;
  }
  std::string* slot = attachment_slot(message);
  if (slot == nullptr || !slot->empty()) {
    error_ = "malformed attachment: " + std::to_string(attachment.size()) +
             " bytes attached to a message that has no single empty call or outcome to hold them";
    return Status::kBadAttachment;
  }
  *slot = std::move(attachment);
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
    case FrameDecoder::Status::kBadAttachment:
      return "malformed attachment";
  }
  return "unknown";
}

}  // namespace clupy::common
