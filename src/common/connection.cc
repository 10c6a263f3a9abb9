#include "common/connection.hpp"

#include <google/protobuf/field_mask.pb.h>
#include <google/protobuf/util/field_mask_util.h>

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

namespace {

// Every field of `batch` except the repeated field holding its items (`items`, a field of the
// body): the envelope each part of a split batch starts from, so that every header field (the
// request id, a job id, a fencing token, any field added later) travels on every part.
wire::Envelope batch_header(const wire::Envelope& batch, std::string_view items) {
  namespace pb = google::protobuf;
  const pb::Reflection& reflection = *batch.GetReflection();
  const pb::FieldDescriptor* body_field =
      batch.GetDescriptor()->FindFieldByNumber(static_cast<int>(batch.body_case()));
  pb::FieldMask mask;
  std::vector<const pb::FieldDescriptor*> fields;
  reflection.ListFields(batch, &fields);
  for (const auto* field : fields)
    if (field != body_field) mask.add_paths(field->name());
  wire::Envelope header;
  if (body_field != nullptr) {
    const pb::Message& body = reflection.GetMessage(batch, body_field);
    fields.clear();
    body.GetReflection()->ListFields(body, &fields);
    for (const auto* field : fields)
      if (field->name() != items) mask.add_paths(body_field->name() + "." + field->name());
    reflection.MutableMessage(&header, body_field);  // the kind, even with no header field set
  }
  pb::util::FieldMaskUtil::MergeMessageTo(batch, mask, {}, &header);
  return header;
}

// Appends the items of an oversized batch as several frames of at most half the limit each,
// each part starting from `header`. An item that cannot fit even alone is handed to `oversized`
// (which may replace it).
template <class Items, class Add, class Oversized>
void split_batch(const Items& items, std::size_t budget, Add add_to, Oversized oversized,
                 const std::function<void(wire::Envelope&)>& emit, const wire::Envelope& header) {
  wire::Envelope part = header;
  std::size_t used = 0;
  for (const auto& item : items) {
    const std::size_t size = item.ByteSizeLong() + 16;
    if (size > budget) {
      oversized(item, part);
      continue;
    }
    if (used + size > budget && used > 0) {
      emit(part);
      part = header;
      used = 0;
    }
    add_to(part, item);
    used += size;
  }
  if (used > 0 || part.ByteSizeLong() > header.ByteSizeLong()) emit(part);
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
          [](wire::Envelope& part, const wire::TaskSpec& t) {
            *part.mutable_submit_tasks()->add_tasks() = t;
          },
          drop, emit, batch_header(message, "tasks"));
      return true;
    case wire::Envelope::kAssignTasks:
      split_batch(
          message.assign_tasks().tasks(), budget,
          [](wire::Envelope& part, const wire::Assignment& a) {
            *part.mutable_assign_tasks()->add_tasks() = a;
          },
          drop, emit, batch_header(message, "tasks"));
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
          emit, batch_header(message, "results"));
      return true;
    default:
      return false;
  }
}

void Connection::append_inline(const wire::Envelope& message) {
  if (!append_frame(message, pending_, max_frame_size_) && !append_split(message)) {
    logger("net")->error("dropping an outgoing message of {} bytes to {}: over max_frame_size {}",
                         message.ByteSizeLong(), peer_, max_frame_size_);
  }
}

void Connection::send(const wire::Envelope& message) {
  if (closed_ || close_when_flushed_) return;
  append_inline(message);
  start_writing();
}

void Connection::send(wire::Envelope&& message) {
  if (closed_ || close_when_flushed_) return;
  if (attachments_) {
    append_with_attachments(message);
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
    if (single.has_task_results()) {
      // A result too big to travel becomes a failure saying so: its future must not hang.
      wire::TaskResult& r = *single.mutable_task_results()->mutable_results(0);
      r.mutable_failure()->set_kind(static_cast<std::uint32_t>(FailureKind::kProtocol));
      r.mutable_failure()->set_message("the task's result is " + std::to_string(payload.size()) +
                                       " bytes, more than max_frame_size (" +
                                       std::to_string(max_frame_size_) + ")");
      r.mutable_failure()->set_server(r.server_id());
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

namespace {

// Moves the items of a batch into frames: runs of small items share one envelope, and each item
// whose payload is large enough travels alone with the payload as the frame's attachment. The
// items keep their order. `start` begins an envelope of this batch's kind (its shared fields
// set), `add` moves an item into one, `payload` names an item's call or outcome.
template <class Items, class Start, class Add, class Payload, class Inline, class Attached>
void split_attachments(Items& items, Start start, Add add, Payload payload, Inline send_inline,
                       Attached send_attached) {
  wire::Envelope part;
  bool part_used = false;
  for (auto& item : items) {
    std::string& bytes = payload(item);
    if (bytes.size() < kAttachmentThreshold) {
      if (!part_used) start(part);
      add(part, item);
      part_used = true;
      continue;
    }
    if (part_used) {
      send_inline(part);
      part.Clear();
      part_used = false;
    }
    std::string moved = std::move(bytes);
    bytes.clear();
    wire::Envelope single;
    start(single);
    add(single, item);
    send_attached(single, std::move(moved));
  }
  if (part_used) send_inline(part);
}

}  // namespace

namespace {

// Whether any call or outcome of `message` is big enough to travel as an attachment. Most
// batches hold none: they are then framed as they are, without moving their items.
bool has_large_payload(const wire::Envelope& message) {
  auto large = [](const std::string& bytes) { return bytes.size() >= kAttachmentThreshold; };
  switch (message.body_case()) {
    case wire::Envelope::kSubmitTasks:
      for (const auto& t : message.submit_tasks().tasks())
        if (large(t.call())) return true;
      return false;
    case wire::Envelope::kAssignTasks:
      for (const auto& a : message.assign_tasks().tasks())
        if (large(a.call())) return true;
      return false;
    case wire::Envelope::kTaskResults:
      for (const auto& r : message.task_results().results())
        if (large(r.outcome())) return true;
      return false;
    case wire::Envelope::kRunTask:
      return large(message.run_task().call());
    case wire::Envelope::kTaskDone:
      return large(message.task_done().outcome());
    default:
      return false;
  }
}

}  // namespace

void Connection::append_with_attachments(wire::Envelope& message) {
  if (!has_large_payload(message)) {
    append_inline(message);
    return;
  }
  auto send_inline = [this](const wire::Envelope& part) { append_inline(part); };
  auto send_attached = [this](wire::Envelope& single, std::string&& bytes) {
    append_attached(single, std::move(bytes));
  };
  switch (message.body_case()) {
    case wire::Envelope::kSubmitTasks: {
      const wire::Envelope header = batch_header(message, "tasks");
      split_attachments(
          *message.mutable_submit_tasks()->mutable_tasks(), [&](wire::Envelope& e) { e = header; },
          [](wire::Envelope& e, wire::TaskSpec& t) {
            *e.mutable_submit_tasks()->add_tasks() = std::move(t);
          },
          [](wire::TaskSpec& t) -> std::string& { return *t.mutable_call(); }, send_inline,
          send_attached);
      return;
    }
    case wire::Envelope::kAssignTasks: {
      const wire::Envelope header = batch_header(message, "tasks");
      split_attachments(
          *message.mutable_assign_tasks()->mutable_tasks(), [&](wire::Envelope& e) { e = header; },
          [](wire::Envelope& e, wire::Assignment& a) {
            *e.mutable_assign_tasks()->add_tasks() = std::move(a);
          },
          [](wire::Assignment& a) -> std::string& { return *a.mutable_call(); }, send_inline,
          send_attached);
      return;
    }
    case wire::Envelope::kTaskResults: {
      const wire::Envelope header = batch_header(message, "results");
      split_attachments(
          *message.mutable_task_results()->mutable_results(),
          [&](wire::Envelope& e) { e = header; },
          [](wire::Envelope& e, wire::TaskResult& r) {
            *e.mutable_task_results()->add_results() = std::move(r);
          },
          [](wire::TaskResult& r) -> std::string& { return *r.mutable_outcome(); }, send_inline,
          send_attached);
      return;
    }
    case wire::Envelope::kRunTask:
    case wire::Envelope::kTaskDone: {
      std::string& bytes = *attachment_slot(message);
      if (bytes.size() < kAttachmentThreshold) break;
      std::string moved = std::move(bytes);
      bytes.clear();
      append_attached(message, std::move(moved));
      return;
    }
    default:
      break;
  }
  append_inline(message);
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
