// Pushed calls on the client side (protocol 1.5, docs/protocol.md#pushed-calls): a call of at
// least the master's push_threshold stays here; the master places its task and sends a ticket,
// and this process pushes the bytes to that server's data port (through the master when the
// port cannot be reached). A held outcome of the task comes back on the same connection.
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "client/runtime.hpp"
#include "common/log.hpp"
#include "common/test_hooks.hpp"

namespace clupy::client {

namespace {
auto log() { return common::logger("client"); }

// A copy of the call: the bytes stay in the program until the task's result, in case it is
// placed again. `task_id` names the task towards the master (0 on a data connection).
wire::Envelope pushed_call_message(std::uint64_t ticket, std::uint64_t task_id,
                                   const std::string& call) {
  wire::Envelope message;
  message.mutable_pushed_call()->set_ticket(ticket);
  if (task_id != 0) message.mutable_pushed_call()->set_task_id(task_id);
  message.mutable_pushed_call()->set_call(call);
  return message;
}
}  // namespace

std::shared_ptr<const std::string> Runtime::pushed_call_of(std::uint64_t task_id) {
  std::lock_guard lock(mu_);
  auto it = pending_.find(task_id);
  return it == pending_.end() ? nullptr : it->second.pushed_call;
}

void Runtime::on_call_tickets(const wire::CallTickets& tickets) {
  // Test only (tests/integration/pushed_calls_test.cc): push once this file exists, so that a
  // test can act between a placement and its push.
  if (!push_gate_passed_ && !common::test_hooks().push_gate.empty()) {
    asio::co_spawn(io_, push_when_gate_opens(tickets), asio::detached);
    return;
  }
  for (const wire::CallTicket& ticket : tickets.tickets()) {
    if (ticket.data_address().empty() || !data_port_unreachable(ticket.data_address()).empty()) {
      push_through_master(ticket.ticket(), ticket.task_id());
      continue;
    }
    const std::shared_ptr<DataLink> link = data_link(ticket.data_address());
    if (link->connection)
      send_push(*link, ticket.ticket(), ticket.task_id());
    else
      link->queued_pushes.emplace_back(ticket.ticket(), ticket.task_id());
  }
}

asio::awaitable<void> Runtime::push_when_gate_opens(wire::CallTickets tickets) {
  co_await wait_for_test_gate(common::test_hooks().push_gate);
  push_gate_passed_ = true;  // once: later tickets are pushed at once
  if (!stopped_) on_call_tickets(tickets);
}

void Runtime::send_push(DataLink& link, std::uint64_t ticket, std::uint64_t task_id) {
  auto call = pushed_call_of(task_id);
  if (!call) return;  // finished or cancelled meanwhile
  link.pushes[ticket] = task_id;
  link.connection->send(pushed_call_message(ticket, 0, *call));
}

void Runtime::push_through_master(std::uint64_t ticket, std::uint64_t task_id) {
  auto call = pushed_call_of(task_id);
  if (!call || !connection_ || !connection_->is_open()) return;  // a failover places it again
  connection_->send(pushed_call_message(ticket, task_id, *call));
}

void Runtime::on_pushed_result(DataLink& link, wire::PushedResult& result) {
  auto push = link.pushes.find(result.ticket());
  if (push == link.pushes.end()) return;
  const std::uint64_t task_id = push->second;
  link.pushes.erase(push);
  if (auto waiting = link.awaiting_results.find(task_id); waiting != link.awaiting_results.end()) {
    Completion completion = std::move(waiting->second);
    link.awaiting_results.erase(waiting);
    finish_held(completion, result.outcome());
    return;
  }
  pushed_outcomes_[task_id] = std::move(*result.mutable_outcome());
}

bool Runtime::complete_pushed(Completion& completion) {
  const std::uint64_t task_id = completion.result.task_id();
  if (auto arrived = pushed_outcomes_.find(task_id); arrived != pushed_outcomes_.end()) {
    const std::string outcome = std::move(arrived->second);
    pushed_outcomes_.erase(arrived);
    finish_held(completion, outcome);
    return true;
  }
  // Still on its way, if the link it comes on is up and still expects it.
  auto link = data_links_.find(completion.result.held().data_address());
  if (link == data_links_.end() || !link->second->connection) return false;
  for (const auto& [ticket, pushed_task] : link->second->pushes) {
    if (pushed_task != task_id) continue;
    link->second->awaiting_results.emplace(task_id, completion);  // a copy, as fetch_held's
    return true;
  }
  return false;
}

void Runtime::forget_pushes(std::vector<std::uint64_t> task_ids) {
  std::sort(task_ids.begin(), task_ids.end());
  for (auto& [address, link] : data_links_) {
    for (auto push = link->pushes.begin(); push != link->pushes.end();) {
      const bool done = std::binary_search(task_ids.begin(), task_ids.end(), push->second);
      if (done && !link->awaiting_results.contains(push->second))
        push = link->pushes.erase(push);
      else
        ++push;
    }
  }
}

void Runtime::data_link_lost(DataLink& link, const std::string& reason) {
  auto awaiting = std::move(link.awaiting_results);
  link.awaiting_results.clear();
  for (auto& [task_id, completion] : awaiting)
    fetch_held_through_master(std::move(completion), "the data connection closed: " + reason);
  // The server may not have had them: through the master, which passes each on only if its
  // task still waits for it there.
  auto pushes = std::move(link.pushes);
  link.pushes.clear();
  for (const auto& [ticket, task_id] : pushes) push_through_master(ticket, task_id);
  if (!pushes.empty())
    log()->info("data connection closed ({}); {} pushed call(s) sent again through the master",
                reason, pushes.size());
}

}  // namespace clupy::client
