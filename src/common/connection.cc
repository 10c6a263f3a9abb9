#include "common/connection.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "clupy/errors.hpp"
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

namespace {

// Appends the items of an oversized batch as several frames of at most half the limit each.
// An item that cannot fit even alone is handed to `oversized` (which may replace it).
template <class Items, class Add, class Oversized>
void split_batch(const Items& items, std::size_t budget, Add add_to, Oversized oversized,
                 const std::function<void(wire::Envelope&)>& emit, const wire::Envelope& original) {
  wire::Envelope part;
  part.set_request_id(original.request_id());
  std::size_t used = 0;
  for (const auto& item : items) {
    const std::size_t size = item.ByteSizeLong() + 16;
    if (size > budget) {
      oversized(item, part);
      continue;
    }
    if (used + size > budget && used > 0) {
      emit(part);
      part.Clear();
      part.set_request_id(original.request_id());
      used = 0;
    }
    add_to(part, item);
    used += size;
  }
  if (used > 0 || part.ByteSizeLong() > 0) emit(part);
}

}  // namespace

bool Connection::append_split(const wire::Envelope& message) {
  const std::size_t budget = max_frame_size_ / 2;
  auto emit = [this](wire::Envelope& part) { append_frame(part, pending_, max_frame_size_); };
  auto drop = [this](const auto& item, wire::Envelope&) {
    logger("net")->error("dropping an item of {} bytes to {}: over max_frame_size {}",
                         item.ByteSizeLong(), peer_, max_frame_size_);
  };
  switch (message.body_case()) {
    case wire::Envelope::kSubmitTasks:
      split_batch(
          message.submit_tasks().tasks(), budget,
          [&](wire::Envelope& part, const wire::TaskSpec& t) {
            part.mutable_submit_tasks()->set_job_id(message.submit_tasks().job_id());
            *part.mutable_submit_tasks()->add_tasks() = t;
          },
          drop, emit, message);
      return true;
    case wire::Envelope::kAssignTasks:
      split_batch(
          message.assign_tasks().tasks(), budget,
          [](wire::Envelope& part, const wire::Assignment& a) {
            *part.mutable_assign_tasks()->add_tasks() = a;
          },
          drop, emit, message);
      return true;
    case wire::Envelope::kTaskResults:
      // A result too big to travel becomes a failure saying so: its future must not hang.
      split_batch(
          message.task_results().results(), budget,
          [](wire::Envelope& part, const wire::TaskResult& r) {
            *part.mutable_task_results()->add_results() = r;
          },
          [&](const wire::TaskResult& r, wire::Envelope& part) {
            wire::TaskResult failed;
            failed.set_task_id(r.task_id());
            failed.set_server_id(r.server_id());
            failed.set_attempts(r.attempts());
            failed.mutable_failure()->set_kind(static_cast<std::uint32_t>(FailureKind::kProtocol));
            failed.mutable_failure()->set_message("the task's result is " +
                                                  std::to_string(r.ByteSizeLong()) +
                                                  " bytes, more than half of max_frame_size (" +
                                                  std::to_string(max_frame_size_) + ")");
            failed.mutable_failure()->set_server(r.server_id());
            *part.mutable_task_results()->add_results() = std::move(failed);
          },
          emit, message);
      return true;
    default:
      return false;
  }
}

void Connection::send(const wire::Envelope& message) {
  if (closed_ || close_when_flushed_) return;
  if (!append_frame(message, pending_, max_frame_size_) && !append_split(message)) {
    logger("net")->error("dropping an outgoing message of {} bytes to {}: over max_frame_size {}",
                         message.ByteSizeLong(), peer_, max_frame_size_);
    return;
  }
  if (!writing_) {
    writing_ = true;
    asio::co_spawn(
        executor(), [self = shared_from_this()] { return self->write_loop(); }, asio::detached);
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
  if (auto handler = std::move(on_close_)) {
    on_close_ = nullptr;
    asio::post(executor(), [self = shared_from_this(), handler = std::move(handler), reason] {
      handler(reason);
    });
  }
}

}  // namespace clupy::common
