// How outgoing messages are cut into frames, described once per message kind: which repeated
// field of a batch holds its items, which bytes field of an item is its payload (a call or an
// outcome), and what stands in for an item that cannot travel at all. Connection frames the
// parts this module hands it and knows no message kind itself.
//
// Every part of a cut batch starts from the batch's header (batch_header): every field of the
// batch except its items, so that the request id, a job id or a fencing token travels on every
// part. Pure functions of their arguments; thread-safe.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "clupy.pb.h"

namespace clupy::common {

// Receives one part: an envelope, and the payload that travels as its attachment (empty: none,
// the part is framed inline).
using PartSink = std::function<void(wire::Envelope& part, std::string&& attachment)>;
// Told of an item dropped because it cannot travel even alone (its serialized size).
using DropSink = std::function<void(std::size_t bytes)>;

// Every field of `batch` except the items of its batch kind. For a message that is not a batch:
// the whole message.
wire::Envelope batch_header(const wire::Envelope& batch);

// The field a frame's attachment belongs to: the payload of the message's only item (SubmitTasks
// and AssignTasks: tasks[0].call; TaskResults: results[0].outcome; RunTask.call;
// TaskDone.outcome; PushedCall.call; PushedResult.outcome). Null when the message is of another
// kind or does not hold exactly one item.
std::string* attachment_slot(wire::Envelope& message);

// Whether `message` is of a kind whose items may be cut into several frames (SubmitTasks,
// AssignTasks, TaskResults).
bool is_batch(const wire::Envelope& message);

// Cuts a batch too large for one frame into parts of at most max_frame_size / 2 serialized
// bytes each, items in order, each part passed to `inline_part` (without attachment). An item
// too large even alone is replaced by its kind's stand-in (a result: a kProtocol failure that
// says so, since its future must not hang) or, for kinds without one, passed to `dropped`.
// Returns false, doing nothing, when `message` is not a batch.
bool split_batch(const wire::Envelope& message, std::size_t max_frame_size,
                 const PartSink& inline_part, const DropSink& dropped);

// Whether any call or outcome of `message` is at least kAttachmentThreshold bytes.
bool has_large_payload(const wire::Envelope& message);

// Moves the payloads of at least kAttachmentThreshold bytes out of `message`: runs of small
// items share a part without attachment, each large item travels alone in a part whose payload
// is the attachment; order is kept. A message of a single-payload kind (RunTask, TaskDone,
// PushedCall, PushedResult) is one part. `message` is left unspecified.
void split_attachments(wire::Envelope& message, const PartSink& part);

// When `part` (one item) cannot carry an attachment of `bytes` within `max_frame_size`: makes
// it the kind's stand-in without a payload and returns true (a result becomes a kProtocol
// failure that says so), or returns false when the kind has none (the part is to be dropped).
bool stand_in_for_oversized(wire::Envelope& part, std::size_t bytes, std::size_t max_frame_size);

}  // namespace clupy::common
