// One framed CluPy connection: reads frames and hands each Envelope to a handler; queues
// outgoing Envelopes and writes everything queued in one system call whenever the socket is
// idle, so a burst of small messages becomes one batch while a lone message leaves at once.
// It knows no message kind: how a message is cut into frames is common/batches.hpp's table.
//
// Not thread-safe: every member is called on the connection's executor (one io_context thread).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "clupy.pb.h"
#include "common/frame.hpp"
#include "common/transport.hpp"

namespace clupy::common {

// Thrown by read_frame when the peer closed, sent garbage, or the socket failed. what() is the
// reason logged when the connection is closed.
class ConnectionClosed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using MessageHandler = std::function<void(wire::Envelope&)>;
  using CloseHandler = std::function<void(const std::string& reason)>;

  Connection(Transport transport, std::size_t max_frame_size);
  ~Connection();

  // Reads exactly one frame (used by the handshake before start()). Throws ConnectionClosed.
  asio::awaitable<wire::Envelope> read_frame();

  // Starts the read loop: every frame goes to on_message, then on_close runs once when the
  // connection ends for any reason (both run on the executor, never inside send/close).
  void start(MessageHandler on_message, CloseHandler on_close);

  // Queues a message. After close() it is dropped silently: the close handler reports the loss.
  // A batch (SubmitTasks, AssignTasks, TaskResults) over max_frame_size leaves as several frames;
  // a single result too big to travel is replaced by a failure that says so.
  void send(const wire::Envelope& message);
  // The same, but calls and outcomes of at least kAttachmentThreshold bytes are moved out of
  // `message` and written as frame attachments (each such item in a frame of its own, order
  // kept) when the peer reads attachments; `message` is left unspecified.
  void send(wire::Envelope&& message);

  // The largest frame body or attachment accepted from the peer from now on (it starts at the
  // constructor's max_frame_size). An acceptor keeps it small until the peer has proved the
  // token, so an unauthenticated peer cannot make it allocate more (docs/protocol.md).
  void limit_incoming_frames(std::size_t max_size) { decoder_.set_max_frame_size(max_size); }

  // The peer reads frame attachments (protocol 1.2 or later; see docs/protocol.md). Until this
  // is called, every payload travels inside its envelope.
  void enable_attachments() { attachments_ = true; }
  bool attachments_enabled() const { return attachments_; }

  // Closes after everything queued so far has been written (a Refused reply, a goodbye).
  void close_after_flush(const std::string& reason);
  // Closes now; queued messages are dropped. Idempotent.
  void close(const std::string& reason);

  bool is_open() const { return !closed_; }
  const std::string& peer() const { return peer_; }
  Transport& transport() { return transport_; }
  asio::any_io_executor executor();
  std::size_t queued_bytes() const {
    return pending_.size() + in_flight_.size() + attachment_bytes_;
  }

 private:
  // Queues one frame carrying one item and its payload as the attachment.
  void append_attached(wire::Envelope& single, std::string&& payload);
  // Queues a message whose payloads travel inline; a batch too large for one frame is cut into
  // several (common/batches.hpp).
  void append_inline(const wire::Envelope& message);
  void start_writing();
  asio::awaitable<void> read_loop();
  asio::awaitable<void> write_loop();
  // Reads from the socket until the decoder yields a frame; returns false at end of stream.
  asio::awaitable<bool> fill_next(wire::Envelope& message);

  Transport transport_;
  FrameDecoder decoder_;
  std::size_t max_frame_size_;
  std::string peer_;
  // An attachment, written after the first `offset` bytes of its string of frames.
  struct Attachment {
    std::size_t offset = 0;
    std::string bytes;
  };
  std::string pending_;
  std::string in_flight_;
  std::vector<Attachment> pending_attachments_;
  std::vector<Attachment> in_flight_attachments_;
  std::size_t attachment_bytes_ = 0;  // of both lists
  bool attachments_ = false;
  bool writing_ = false;
  bool closed_ = false;
  bool close_when_flushed_ = false;
  std::string close_reason_;
  MessageHandler on_message_;
  CloseHandler on_close_;
};

}  // namespace clupy::common
