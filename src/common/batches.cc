#include "common/batches.hpp"

#include <google/protobuf/field_mask.pb.h>
#include <google/protobuf/util/field_mask_util.h>

#include <vector>

#include "clupy/errors.hpp"
#include "common/frame.hpp"

namespace clupy::common {
namespace {

namespace pb = google::protobuf;

// One batch kind: where its items are and which bytes of an item may travel as an attachment.
template <class Item>
struct BatchKind {
  const char* items_field;  // the repeated field of the batch's body, by name
  const pb::RepeatedPtrField<Item>& (*items)(const wire::Envelope&);
  pb::RepeatedPtrField<Item>* (*mutable_items)(wire::Envelope&);
  std::string* (*payload)(Item&);
  const std::string& (*payload_of)(const Item&);
  // What travels instead of an item too large for any frame; nullptr: the item is dropped.
  // `limit` names the limit it exceeded, for the message.
  Item (*stand_in)(const Item&, std::size_t bytes, const std::string& limit);
};

wire::TaskResult failed_result(const wire::TaskResult& result, std::size_t bytes,
                               const std::string& limit) {
  wire::TaskResult failed;
  failed.set_task_id(result.task_id());
  failed.set_server_id(result.server_id());
  failed.set_attempts(result.attempts());
  failed.mutable_failure()->set_kind(static_cast<std::uint32_t>(FailureKind::kProtocol));
  failed.mutable_failure()->set_message("the task's result is " + std::to_string(bytes) +
                                        " bytes, more than " + limit);
  failed.mutable_failure()->set_server(result.server_id());
  return failed;
}

const BatchKind<wire::TaskSpec> kSubmitTasks{
    "tasks",
    [](const wire::Envelope& e) -> const pb::RepeatedPtrField<wire::TaskSpec>& {
      return e.submit_tasks().tasks();
    },
    [](wire::Envelope& e) { return e.mutable_submit_tasks()->mutable_tasks(); },
    [](wire::TaskSpec& t) { return t.mutable_call(); },
    [](const wire::TaskSpec& t) -> const std::string& { return t.call(); },
    nullptr};

const BatchKind<wire::Assignment> kAssignTasks{
    "tasks",
    [](const wire::Envelope& e) -> const pb::RepeatedPtrField<wire::Assignment>& {
      return e.assign_tasks().tasks();
    },
    [](wire::Envelope& e) { return e.mutable_assign_tasks()->mutable_tasks(); },
    [](wire::Assignment& a) { return a.mutable_call(); },
    [](const wire::Assignment& a) -> const std::string& { return a.call(); },
    nullptr};

// A result too big to travel becomes a failure saying so: its future must not hang.
const BatchKind<wire::TaskResult> kTaskResults{
    "results",
    [](const wire::Envelope& e) -> const pb::RepeatedPtrField<wire::TaskResult>& {
      return e.task_results().results();
    },
    [](wire::Envelope& e) { return e.mutable_task_results()->mutable_results(); },
    [](wire::TaskResult& r) { return r.mutable_outcome(); },
    [](const wire::TaskResult& r) -> const std::string& { return r.outcome(); },
    &failed_result};

// The table: calls `use(kind)` with the batch kind of `body`; false when it is not a batch.
template <class Use>
bool with_batch_kind(wire::Envelope::BodyCase body, Use&& use) {
  switch (body) {
    case wire::Envelope::kSubmitTasks:
      use(kSubmitTasks);
      return true;
    case wire::Envelope::kAssignTasks:
      use(kAssignTasks);
      return true;
    case wire::Envelope::kTaskResults:
      use(kTaskResults);
      return true;
    default:
      return false;
  }
}

// The kinds that carry one payload and are never cut (server <-> worker).
const std::string* single_payload_of(const wire::Envelope& message) {
  switch (message.body_case()) {
    case wire::Envelope::kRunTask:
      return &message.run_task().call();
    case wire::Envelope::kTaskDone:
      return &message.task_done().outcome();
    case wire::Envelope::kPushedCall:
      return &message.pushed_call().call();
    case wire::Envelope::kPushedResult:
      return &message.pushed_result().outcome();
    default:
      return nullptr;
  }
}

std::string* single_payload(wire::Envelope& message) {
  switch (message.body_case()) {
    case wire::Envelope::kRunTask:
      return message.mutable_run_task()->mutable_call();
    case wire::Envelope::kTaskDone:
      return message.mutable_task_done()->mutable_outcome();
    case wire::Envelope::kPushedCall:
      return message.mutable_pushed_call()->mutable_call();
    case wire::Envelope::kPushedResult:
      return message.mutable_pushed_result()->mutable_outcome();
    default:
      return nullptr;
  }
}

bool large(const std::string& bytes) { return bytes.size() >= kAttachmentThreshold; }

// Every field of `batch` but the body's field `items`, by reflection: a field added to a batch
// later is carried without anyone remembering to.
wire::Envelope header_without(const wire::Envelope& batch, std::string_view items) {
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

template <class Item>
void split_items(const BatchKind<Item>& kind, const wire::Envelope& message,
                 std::size_t max_frame_size, const PartSink& emit, const DropSink& dropped) {
  const std::size_t budget = max_frame_size / 2;
  const std::string limit = "half of max_frame_size (" + std::to_string(max_frame_size) + ")";
  const wire::Envelope header = header_without(message, kind.items_field);
  wire::Envelope part = header;
  std::size_t used = 0;
  bool filled = false;
  for (const Item& item : kind.items(message)) {
    const std::size_t size = item.ByteSizeLong() + 16;  // 16: the item's own field overhead
    if (size > budget) {
      if (kind.stand_in == nullptr) {
        dropped(item.ByteSizeLong());
      } else {
        *kind.mutable_items(part)->Add() = kind.stand_in(item, item.ByteSizeLong(), limit);
        filled = true;
      }
      continue;
    }
    if (used + size > budget && used > 0) {
      emit(part, {});
      part = header;
      used = 0;
      filled = false;
    }
    *kind.mutable_items(part)->Add() = item;
    used += size;
    filled = true;
  }
  if (filled) emit(part, {});
}

template <class Item>
void split_items_attached(const BatchKind<Item>& kind, wire::Envelope& message,
                          const PartSink& emit) {
  const wire::Envelope header = header_without(message, kind.items_field);
  wire::Envelope part;
  bool filled = false;
  for (Item& item : *kind.mutable_items(message)) {
    std::string& bytes = *kind.payload(item);
    if (!large(bytes)) {
      if (!filled) part = header;
      *kind.mutable_items(part)->Add() = std::move(item);
      filled = true;
      continue;
    }
    if (filled) {
      emit(part, {});
      filled = false;
    }
    std::string moved = std::move(bytes);
    bytes.clear();
    wire::Envelope single = header;
    *kind.mutable_items(single)->Add() = std::move(item);
    emit(single, std::move(moved));
  }
  if (filled) emit(part, {});
}

}  // namespace

wire::Envelope batch_header(const wire::Envelope& batch) {
  wire::Envelope header;
  if (!with_batch_kind(batch.body_case(),
                       [&](const auto& kind) { header = header_without(batch, kind.items_field); }))
    header = batch;
  return header;
}

std::string* attachment_slot(wire::Envelope& message) {
  if (std::string* slot = single_payload(message)) return slot;
  std::string* slot = nullptr;
  with_batch_kind(message.body_case(), [&](const auto& kind) {
    auto* items = kind.mutable_items(message);
    if (items->size() == 1) slot = kind.payload(*items->Mutable(0));
  });
  return slot;
}

bool is_batch(const wire::Envelope& message) {
  return with_batch_kind(message.body_case(), [](const auto&) {});
}

bool split_batch(const wire::Envelope& message, std::size_t max_frame_size,
                 const PartSink& inline_part, const DropSink& dropped) {
  return with_batch_kind(message.body_case(), [&](const auto& kind) {
    split_items(kind, message, max_frame_size, inline_part, dropped);
  });
}

bool has_large_payload(const wire::Envelope& message) {
  bool found = false;
  const bool batch = with_batch_kind(message.body_case(), [&](const auto& kind) {
    for (const auto& item : kind.items(message)) {
      if (large(kind.payload_of(item))) {
        found = true;
        return;
      }
    }
  });
  if (batch) return found;
  const std::string* payload = single_payload_of(message);
  return payload != nullptr && large(*payload);
}

void split_attachments(wire::Envelope& message, const PartSink& part) {
  if (with_batch_kind(message.body_case(),
                      [&](const auto& kind) { split_items_attached(kind, message, part); }))
    return;
  std::string* payload = single_payload(message);
  if (payload == nullptr || !large(*payload)) {
    part(message, {});
    return;
  }
  std::string moved = std::move(*payload);
  payload->clear();
  part(message, std::move(moved));
}

bool stand_in_for_oversized(wire::Envelope& part, std::size_t bytes, std::size_t max_frame_size) {
  bool replaced = false;
  with_batch_kind(part.body_case(), [&](const auto& kind) {
    auto& items = *kind.mutable_items(part);
    if (kind.stand_in == nullptr || items.size() != 1) return;
    items[0] =
        kind.stand_in(items[0], bytes, "max_frame_size (" + std::to_string(max_frame_size) + ")");
    replaced = true;
  });
  return replaced;
}

}  // namespace clupy::common
