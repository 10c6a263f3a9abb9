// Fetches of held results through the master (docs/protocol.md#held-results): the fallback of
// a client that cannot reach the holding server's data port.
#include "clupy/errors.hpp"
#include "master/master.hpp"

namespace clupy::master {

namespace {
void set_lost(wire::Envelope& reply, const std::string& message) {
  auto* failure = reply.mutable_result_bytes()->mutable_failure();
  failure->set_kind(static_cast<std::uint32_t>(FailureKind::kLost));
  failure->set_message(message);
}
}  // namespace

void Master::free_results(SessionId server, wire::FreeResults&& results) {
  wire::Envelope message;
  *message.mutable_free_results() = std::move(results);
  send_to(server, message);
}

void Master::fetch_for_client(SessionId client, std::uint64_t request_id, std::uint64_t task_id) {
  Scheduler::FetchPlan plan = scheduler_.fetch_held(client, task_id, request_id);
  if (plan.location) {
    relay_fetch(client, request_id, task_id, *plan.location);
    return;
  }
  if (plan.waiting) {  // answered by answer_fetches once its producer ran again
    scheduler_.dispatch();
    return;
  }
  wire::Envelope reply;
  reply.set_request_id(request_id);
  set_lost(reply, plan.failure);
  send_to(client, reply);
}

void Master::relay_fetch(SessionId client, std::uint64_t request_id, std::uint64_t task_id,
                         const HeldLocation& where) {
  const std::uint64_t relay_id = next_relay_id_++;
  relays_[relay_id] = Relay{client, request_id, where.server, task_id};
  wire::Envelope ask;
  ask.set_request_id(relay_id);
  ask.mutable_fetch_result()->set_result_id(where.ref.result_id());
  send_to(where.server, ask);
}

void Master::answer_fetches(FetchAnswer&& answer) {
  for (const std::uint64_t request_id : answer.request_ids) {
    if (answer.location) {
      relay_fetch(answer.client, request_id, answer.client_task_id, *answer.location);
      continue;
    }
    wire::Envelope reply;
    reply.set_request_id(request_id);
    *reply.mutable_result_bytes() = answer.bytes;
    result_bytes_relayed_ += answer.bytes.outcome().size();
    send_to(answer.client, reply);
  }
}

void Master::relay_result(SessionId server, wire::Envelope& message) {
  auto it = relays_.find(message.request_id());
  if (it == relays_.end() || it->second.server != server) return;
  const Relay relay = it->second;
  relays_.erase(it);
  result_bytes_relayed_ += message.result_bytes().outcome().size();
  message.set_request_id(relay.request_id);
  send_to(relay.client, message);
}

void Master::fail_relays_through(SessionId server) {
  std::vector<Relay> through;
  for (auto it = relays_.begin(); it != relays_.end();) {
    if (it->second.server != server) {
      ++it;
      continue;
    }
    through.push_back(it->second);
    it = relays_.erase(it);
  }
  // The scheduler has seen the server go: each result is made again, or its loss is told.
  for (const Relay& relay : through)
    fetch_for_client(relay.client, relay.request_id, relay.task_id);
}

}  // namespace clupy::master
