#include "common/connection.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "common/log.hpp"

namespace clupy::common {

namespace {
constexpr std::size_t kReadChunk = 64u << 10;
}

Connection::Connection(Transport transport, std::size_t max_frame_size)
    : transport_(std::move(transport)),
      decoder_(max_frame_size),
      max_frame_size_(max_frame_size),
      peer_(transport_.remote_description()),
      read_buffer_(kReadChunk, '\0') {}

Connection::~Connection() { transport_.close(); }

asio::any_io_executor Connection::executor() { return transport_.executor(); }

asio::awaitable<bool> Connection::fill_next(wire::Envelope& message) {
  while (true) {
    switch (decoder_.next(message)) {
      case FrameDecoder::Status::kFrame:
        co_return true;
      case FrameDecoder::Status::kOversized:
        throw ConnectionClosed("oversized frame: " + std::to_string(decoder_.announced_size()) +
                               " bytes announced, limit " + std::to_string(max_frame_size_));
      case FrameDecoder::Status::kUnparsable:
        throw ConnectionClosed("unparsable frame (not a CluPy envelope)");
      case FrameDecoder::Status::kNeedMore:
        break;
    }
    boost::system::error_code ec;
    std::size_t n = 0;
    try {
      n = co_await transport_.read_some(asio::buffer(read_buffer_));
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
    decoder_.feed(std::string_view(read_buffer_.data(), n));
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
  asio::co_spawn(executor(), [self = shared_from_this()] { return self->read_loop(); },
                 asio::detached);
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

void Connection::send(const wire::Envelope& message) {
  if (closed_ || close_when_flushed_) return;
  if (!append_frame(message, pending_, max_frame_size_)) {
    logger("net")->error("dropping an outgoing message of {} bytes to {}: over max_frame_size {}",
                         message.ByteSizeLong(), peer_, max_frame_size_);
    return;
  }
  if (!writing_) {
    writing_ = true;
    asio::co_spawn(executor(), [self = shared_from_this()] { return self->write_loop(); },
                   asio::detached);
  }
}

asio::awaitable<void> Connection::write_loop() {
  auto self = shared_from_this();
  try {
    while (!closed_ && !pending_.empty()) {
      // Everything queued while the previous write was in flight leaves as one batch.
      in_flight_.swap(pending_);
      pending_.clear();
      co_await transport_.write_all(asio::buffer(in_flight_));
      in_flight_.clear();
    }
  } catch (const boost::system::system_error& e) {
    writing_ = false;
    close(e.code() == asio::error::operation_aborted ? close_reason_ : "write failed: " + e.code().message());
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
  if (auto handler = std::move(on_close_)) {
    on_close_ = nullptr;
    asio::post(executor(), [self = shared_from_this(), handler = std::move(handler), reason] {
      handler(reason);
    });
  }
}

}  // namespace clupy::common
