#include "common/connection.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "clupy/errors.hpp"
#include "common/batches.hpp"
#include "common/log.hpp"

namespace clupy::common {

namespace {
// The least free space offered to each read; a frame's announced body gets room of its own.
constexpr std::size_t kReadChunk = 64u << 10;
}  // namespace

Connection::Connection(Transport transport, std::size_t max_frame_size)
    : transport_(std::move(transport)),
      decoder_(max_frame_size),
      max_frame_size_(max_frame_size),
      peer_(transport_.remote_description()) {}

Connection::~Connection() { transport_.close(); }

asio::any_io_executor Connection::executor() { return transport_.executor(); }

asio::awaitable<bool> Connection::fill_next(wire::Envelope& message) {
  while (true) {
    switch (decoder_.next(message)) {
      case FrameDecoder::Status::kFrame:
        co_return true;
      case FrameDecoder::Status::kOversized:
      case FrameDecoder::Status::kUnparsable:
      case FrameDecoder::Status::kBadAttachment:
        throw ConnectionClosed(decoder_.error());
      case FrameDecoder::Status::kNeedMore:
        break;
    }
    boost::system::error_code ec;
    std::size_t n = 0;
    try {
      const std::span<char> space = decoder_.prepare(kReadChunk);
      n = co_await transport_.read_some(asio::buffer(space.data(), space.size()));
    } catch (const boost::system::system_error& e) {
      ec = e.code();
    }
    // Closed from this side (a deadline, a shutdown): report that reason, not the socket's.
    if (closed_) throw ConnectionClosed(close_reason_);
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
      if (decoder_.buffered() > 0)
        throw ConnectionClosed("peer closed mid-frame (" + std::to_string(decoder_.buffered()) +
                               " bytes of a truncated frame)");
      co_return false;
    }
    if (ec) throw ConnectionClosed(ec.message());
    decoder_.commit(n);
  }
}

asio::awaitable<wire::Envelope> Connection::read_frame() {
  wire::Envelope message;
  if (!co_await fill_next(message)) throw ConnectionClosed("peer closed the connection");
  co_return message;
}

void Connection::start(MessageHandler on_message, CloseHandler on_close) {
  on_message_ = std::move(on_message);
  on_close_ = std::move(on_close);
  asio::co_spawn(
      executor(), [self = shared_from_this()] { return self->read_loop(); }, asio::detached);
}

asio::awaitable<void> Connection::read_loop() {
  auto self = shared_from_this();  // keeps the connection alive while reading
  std::string reason = "peer closed the connection";
  try {
    wire::Envelope message;
    while (!closed_ && co_await fill_next(message)) {
      if (on_message_) on_message_(message);
      message.Clear();
    }
  } catch (const ConnectionClosed& e) {
    reason = e.what();
  } catch (const std::exception& e) {
    reason = std::string("internal error while handling a message: ") + e.what();
  }
  close(closed_ ? close_reason_ : reason);
  on_message_ = nullptr;  // drops what the handler captured, now that it can no longer run
}

void Connection::append_inline(const wire::Envelope& message) {
  if (append_frame(message, pending_, max_frame_size_)) return;
  const bool split = split_batch(
      message, max_frame_size_,
      [this](wire::Envelope& part, std::string&&) {
        append_frame(part, pending_, max_frame_size_);
      },
      [this](std::size_t bytes) {
        logger("net")->error("dropping an item of {} bytes to {}: over max_frame_size {}", bytes,
                             peer_, max_frame_size_);
      });
  if (!split)
    logger("net")->error("dropping an outgoing message of {} bytes to {}: over max_frame_size {}",
                         message.ByteSizeLong(), peer_, max_frame_size_);
}

void Connection::send(const wire::Envelope& message) {
  if (closed_ || close_when_flushed_) return;
  append_inline(message);
  start_writing();
}

void Connection::send(wire::Envelope&& message) {
  if (closed_ || close_when_flushed_) return;
  if (attachments_ && has_large_payload(message)) {
    split_attachments(message, [this](wire::Envelope& part, std::string&& attachment) {
      if (attachment.empty()) {
        append_inline(part);
      } else {
        append_attached(part, std::move(attachment));
      }
    });
  } else {
    append_inline(message);
  }
  start_writing();
}

void Connection::start_writing() {
  if (writing_ || (pending_.empty() && pending_attachments_.empty())) return;
  writing_ = true;
  asio::co_spawn(
      executor(), [self = shared_from_this()] { return self->write_loop(); }, asio::detached);
}

void Connection::append_attached(wire::Envelope& single, std::string&& payload) {
  if (payload.size() > max_frame_size_) {
    if (stand_in_for_oversized(single, payload.size(), max_frame_size_)) {
      append_inline(single);
      return;
    }
    logger("net")->error("dropping a payload of {} bytes to {}: over max_frame_size {}",
                         payload.size(), peer_, max_frame_size_);
    return;
  }
  if (!append_attached_frame(single, payload.size(), pending_, max_frame_size_)) {
    logger("net")->error("dropping an outgoing message of {} bytes to {}: over max_frame_size {}",
                         single.ByteSizeLong(), peer_, max_frame_size_);
    return;
  }
  attachment_bytes_ += payload.size();
  pending_attachments_.push_back({pending_.size(), std::move(payload)});
}

asio::awaitable<void> Connection::write_loop() {
  auto self = shared_from_this();
  try {
    std::vector<asio::const_buffer> buffers;
    while (!closed_ && (!pending_.empty() || !pending_attachments_.empty())) {
      // Everything queued while the previous write was in flight leaves as one batch: frames
      // from their string, attachments from where they lie, gathered into one write.
      in_flight_.swap(pending_);
      pending_.clear();
      in_flight_attachments_.swap(pending_attachments_);
      pending_attachments_.clear();
      if (in_flight_attachments_.empty()) {
        co_await transport_.write_all(asio::buffer(in_flight_));
      } else {
        buffers.clear();
        std::size_t at = 0;
        for (const Attachment& a : in_flight_attachments_) {
          buffers.push_back(asio::buffer(in_flight_.data() + at, a.offset - at));
          buffers.push_back(asio::buffer(a.bytes));
          at = a.offset;
        }
        if (at < in_flight_.size())
          buffers.push_back(asio::buffer(in_flight_.data() + at, in_flight_.size() - at));
        co_await transport_.write_all(buffers);
      }
      in_flight_.clear();
      for (const Attachment& a : in_flight_attachments_) attachment_bytes_ -= a.bytes.size();
      in_flight_attachments_.clear();
    }
  } catch (const boost::system::system_error& e) {
    writing_ = false;
    for (const Attachment& a : in_flight_attachments_) attachment_bytes_ -= a.bytes.size();
    in_flight_attachments_.clear();
    close(e.code() == asio::error::operation_aborted ? close_reason_
                                                     : "write failed: " + e.code().message());
    co_return;
  }
  writing_ = false;
  if (close_when_flushed_) close(close_reason_);
}

void Connection::close_after_flush(const std::string& reason) {
  if (closed_) return;
  close_when_flushed_ = true;
  close_reason_ = reason;
  if (!writing_) close(reason);
}

void Connection::close(const std::string& reason) {
  if (closed_) return;
  closed_ = true;
  close_reason_ = reason;
  transport_.close();
  pending_.clear();
  for (const Attachment& a : pending_attachments_) attachment_bytes_ -= a.bytes.size();
  pending_attachments_.clear();
  if (auto handler = std::move(on_close_)) {
    on_close_ = nullptr;
    asio::post(executor(), [self = shared_from_this(), handler = std::move(handler), reason] {
      handler(reason);
    });
  }
}

}  // namespace clupy::common
