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

void Master::fetch_for_client(SessionId client, const wire::Envelope& message) {
  const std::uint64_t task_id = message.fetch_result().task_id();
  auto where = scheduler_.held_result(client, task_id);
  if (!where) {
    wire::Envelope reply;
    reply.set_request_id(message.request_id());
    set_lost(reply, "the result of task " + std::to_string(task_id) +
                        " is no longer held: the server that made it was lost");
    send_to(client, reply);
    return;
  }
  const std::uint64_t relay_id = next_relay_id_++;
  relays_[relay_id] = Relay{client, message.request_id(), where->server, task_id};
  wire::Envelope ask;
  ask.set_request_id(relay_id);
  ask.mutable_fetch_result()->set_result_id(where->ref.result_id());
  send_to(where->server, ask);
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
  for (auto it = relays_.begin(); it != relays_.end();) {
    if (it->second.server != server) {
      ++it;
      continue;
    }
    wire::Envelope reply;
    reply.set_request_id(it->second.request_id);
    set_lost(reply, "the server holding the result of task " + std::to_string(it->second.task_id) +
                        " was lost");
    send_to(it->second.client, reply);
    it = relays_.erase(it);
  }
}

}  // namespace clupy::master
