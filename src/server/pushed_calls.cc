// Pushed calls on the server side (docs/protocol.md#pushed-calls): a task placed here whose
// call the program sends itself, on this server's data port or, when that failed it, through
// the master. Whichever of the assignment and the call comes first waits for the other, at most
// push_timeout; a task whose call does not come is handed back to the master (call_missing),
// which places it again. A held outcome of such a task also goes back to the program on the
// connection its call came on.
#include "clupy/errors.hpp"
#include "common/log.hpp"
#include "server/server.hpp"

namespace clupy::server {

namespace {
auto log() { return common::logger("server"); }
// Calls that came before their assignment are dropped past this many bytes in all (a program
// pushes only calls of tasks the master placed here, so this is far above what arrives early).
constexpr std::size_t kMaxEarlyCallBytes = std::size_t{1} << 30;
constexpr auto kSweepPeriod = std::chrono::milliseconds(250);
}  // namespace

void ServerDaemon::await_pushed_call(wire::Assignment&& task) {
  const std::uint64_t ticket = task.call_ticket();
  if (auto early = early_calls_.find(ticket); early != early_calls_.end()) {
    early_call_bytes_ -= early->second.call.size();
    task.set_call(std::move(early->second.call));
    if (auto from = early->second.from.lock()) pushers_[task.task_id()] = {from, ticket};
    early_calls_.erase(early);
    start_assignment(std::move(task));
    return;
  }
  ticket_of_task_[task.task_id()] = ticket;
  awaiting_calls_[ticket] = AwaitingCall{std::move(task), clock_.now()};
  arm_push_sweep();
}

void ServerDaemon::take_pushed_call(wire::PushedCall&& call,
                                    const std::shared_ptr<common::Connection>& from) {
  ++(from ? calls_pushed_ : calls_pushed_via_master_);
  call_bytes_pushed_ += call.call().size();
  if (stopping_ || !registered_) return;  // the master that placed it is gone
  auto awaiting = awaiting_calls_.find(call.ticket());
  if (awaiting == awaiting_calls_.end()) {
    // Before its assignment (the ticket reached the program first), or after its task left
    // (cancelled, timed out, placed elsewhere): kept a while in case it is the former.
    if (early_call_bytes_ + call.call().size() > kMaxEarlyCallBytes) {
      ++pushed_calls_unmatched_;
      log()->warn("dropping a pushed call (ticket {}): {} bytes of calls wait for assignments",
                  call.ticket(), early_call_bytes_);
      return;
    }
    early_call_bytes_ += call.call().size();
    EarlyCall& early = early_calls_[call.ticket()];
    early.call = std::move(*call.mutable_call());
    early.from = from;
    early.since = clock_.now();
    arm_push_sweep();
    return;
  }
  wire::Assignment task = std::move(awaiting->second.task);
  awaiting_calls_.erase(awaiting);
  ticket_of_task_.erase(task.task_id());
  task.set_call(std::move(*call.mutable_call()));
  if (from) pushers_[task.task_id()] = {from, call.ticket()};
  start_assignment(std::move(task));
}

void ServerDaemon::push_result_back(wire::TaskResult& result) {
  auto pusher = pushers_.find(result.task_id());
  if (pusher == pushers_.end()) return;
  const Pusher to = pusher->second;
  pushers_.erase(pusher);
  if (!result.has_held()) return;  // small or failed: it travels through the master
  auto connection = to.connection.lock();
  if (!connection || !connection->is_open()) return;
  auto outcome = held_->get(result.held().result_id());
  if (!outcome) return;
  ++results_pushed_;
  result_bytes_pushed_ += outcome->size();
  wire::Envelope message;
  message.mutable_pushed_result()->set_ticket(to.ticket);
  *message.mutable_pushed_result()->mutable_outcome() = std::move(*outcome);
  // Before the result leaves for the master: the program usually has the bytes by the time it
  // learns that the task is done.
  connection->send(std::move(message));
  result.mutable_held()->set_pushed(true);
}

bool ServerDaemon::cancel_awaiting(std::uint64_t task_id) {
  auto ticket = ticket_of_task_.find(task_id);
  if (ticket == ticket_of_task_.end()) return false;
  awaiting_calls_.erase(ticket->second);
  ticket_of_task_.erase(ticket);
  hold_thresholds_.erase(task_id);
  queue_result(
      failed_result(task_id, FailureKind::kCancelled, "cancelled before its call arrived"));
  return true;
}

std::vector<std::uint64_t> ServerDaemon::hand_back_awaiting() {
  std::vector<std::uint64_t> ids;
  for (const auto& [task_id, ticket] : ticket_of_task_) {
    ids.push_back(task_id);
    hold_thresholds_.erase(task_id);
  }
  awaiting_calls_.clear();
  ticket_of_task_.clear();
  return ids;
}

void ServerDaemon::forget_pushed_calls() {
  for (const auto& [task_id, ticket] : ticket_of_task_) hold_thresholds_.erase(task_id);
  awaiting_calls_.clear();
  ticket_of_task_.clear();
  early_calls_.clear();
  early_call_bytes_ = 0;
  pushers_.clear();
}

void ServerDaemon::arm_push_sweep() {
  if (push_sweep_armed_ || stopping_) return;
  push_sweep_armed_ = true;
  push_sweep_timer_.expires_after(kSweepPeriod);
  push_sweep_timer_.async_wait([this](boost::system::error_code ec) {
    push_sweep_armed_ = false;
    if (ec || stopping_) return;
    sweep_pushed_calls();
    if (!awaiting_calls_.empty() || !early_calls_.empty()) arm_push_sweep();
  });
}

void ServerDaemon::sweep_pushed_calls() {
  const auto cutoff = clock_.now() - config_.push_timeout;
  for (auto it = early_calls_.begin(); it != early_calls_.end();) {
    if (it->second.since > cutoff) {
      ++it;
      continue;
    }
    ++pushed_calls_unmatched_;
    early_call_bytes_ -= it->second.call.size();
    it = early_calls_.erase(it);
  }
  for (auto it = awaiting_calls_.begin(); it != awaiting_calls_.end();) {
    if (it->second.since > cutoff) {
      ++it;
      continue;
    }
    const std::uint64_t task_id = it->second.task.task_id();
    it = awaiting_calls_.erase(it);
    ticket_of_task_.erase(task_id);
    hold_thresholds_.erase(task_id);
    ++calls_missing_;
    log()->warn("task {}: its call did not come from the program within {} ms; handing it back",
                task_id, config_.push_timeout.count());
    wire::TaskResult result =
        failed_result(task_id, FailureKind::kLost,
                      "its call did not come from the program within " +
                          std::to_string(config_.push_timeout.count()) + " ms");
    result.set_call_missing(true);
    queue_result(std::move(result));
  }
}

}  // namespace clupy::server
