// Pushed calls in the scheduler (docs/protocol.md#pushed-calls): a task whose call the client
// keeps until the master places it. Each placement gets a ticket, sent to the server in the
// assignment and to the client in a CallTicket; the client pushes the call to that server's data
// port (or through the master), and a ticket of an earlier placement matches nothing.
#include "clupy/errors.hpp"
#include "common/log.hpp"
#include "master/master.hpp"
#include "master/scheduler.hpp"

namespace clupy::master {

void Scheduler::accept_pushed(TaskId id, Task& task, wire::TaskSpec& spec) {
  task.pushed = true;
  PushedCall& pushed = pushed_[id];
  counters_.call_bytes_pushed += spec.pushed_call_size();
  // Told by the client, shown on the dashboard: bounded and escaped as a client name is.
  pushed.function_name = common::printable(spec.function_name(), 128);
}

void Scheduler::issue_ticket(SessionId client_id, Client& client, TaskId id,
                             const ServerSlot& server, wire::Assignment& assignment) {
  auto pushed = pushed_.find(id);
  if (pushed == pushed_.end()) return;  // cannot happen: pushed tasks are in pushed_
  const std::uint64_t ticket = next_ticket_++;
  pushed->second.ticket = ticket;
  assignment.set_call_ticket(ticket);
  if (client.tickets.tickets_size() == 0) ticketing_.push_back(client_id);
  wire::CallTicket* out = client.tickets.add_tickets();
  out->set_task_id(tasks_.find(id)->client_task_id);
  out->set_ticket(ticket);
  out->set_server_id(server.first);
  out->set_data_address(server.second.data_address);
  ++counters_.call_tickets;
}

std::optional<Scheduler::PushedCallRoute> Scheduler::pushed_call_route(SessionId client,
                                                                       std::uint64_t client_task_id,
                                                                       std::uint64_t ticket) const {
  auto owner = clients_.find(client);
  if (owner == clients_.end()) return std::nullopt;
  auto known = owner->second.by_client_id.find(client_task_id);
  if (known == owner->second.by_client_id.end()) return std::nullopt;
  const Task* task = tasks_.find(known->second);
  if (task == nullptr || !task->pushed || task->server == nullptr) return std::nullopt;
  auto pushed = pushed_.find(known->second);
  if (pushed == pushed_.end() || pushed->second.ticket != ticket) return std::nullopt;
  return PushedCallRoute{task->server->second.session, known->second};
}

void Scheduler::call_missing(TaskId id, Task& task, const std::string& server_id) {
  ++counters_.calls_missing;
  task.server = nullptr;
  if (auto pushed = pushed_.find(id); pushed != pushed_.end()) pushed->second.ticket = 0;
  if (task.retries_left <= 0) {
    fail(id, FailureKind::kLost,
         "its call, pushed by the program, never reached server " + server_id + " after " +
             std::to_string(task.attempts) + " attempt(s), and no retries are left");
    return;
  }
  --task.retries_left;
  task.since = clock_.now();
  clients_.at(task.client).queue.push_front(id);
  ++queued_;
  ++counters_.rerun;
}

void Master::call_tickets(SessionId client, wire::CallTickets& tickets) {
  wire::Envelope message;
  message.mutable_call_tickets()->Swap(&tickets);
  send_to(client, message);
}

void Master::relay_pushed_call(SessionId client, wire::Envelope& message) {
  wire::PushedCall& pushed = *message.mutable_pushed_call();
  auto route = scheduler_.pushed_call_route(client, pushed.task_id(), pushed.ticket());
  if (!route) return;  // its task finished, was cancelled or placed again: a new ticket follows
  pushed_call_bytes_relayed_ += pushed.call().size();
  pushed.set_task_id(route->task_id);
  send_to(route->server, std::move(message));
}

}  // namespace clupy::master
