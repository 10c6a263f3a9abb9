#include "master/scheduler.hpp"

#include <algorithm>
#include <optional>
#include <string_view>

#include "clupy/detail/call.hpp"
#include "common/version.hpp"

namespace clupy::master {

namespace {
// Short tasks travel in batches only if a server holds enough of them: each message then
// carries many. A server is given about this much work ahead (at its measured rate), at least
// capacity x assign_ahead tasks and at most kMaxAhead, so a client whose tasks are short waits
// at most about this long behind another client's tasks queued on a server.
constexpr auto kAheadHorizon = std::chrono::microseconds(4000);
constexpr std::uint32_t kMaxAhead = 512;
// The rate is measured over at least this long.
constexpr auto kRateWindow = std::chrono::milliseconds(10);
// A batch whose calls or outcomes took more than this is freed after it left, not reused.
constexpr std::size_t kReusedBatchBytes = 1u << 20;

template <class Batch>
void flush_batch(Batch& batch, std::size_t payload_bytes) {
  // Cleared, a batch keeps its messages and their strings' capacity for the next dispatch: no
  // allocation per task once the batches have grown. One that carried big payloads is freed
  // instead, so a few large calls or results do not stay pinned for the master's lifetime.
  if (payload_bytes > kReusedBatchBytes)
    batch = Batch();
  else
    batch.Clear();
}

}  // namespace

Scheduler::Scheduler(Registry& registry, Outbox& outbox, SchedulerConfig config,
                     const base::Clock& clock)
    : registry_(registry), outbox_(outbox), clock_(clock), config_(config) {}

std::uint64_t Scheduler::open_job(SessionId client, const std::string& client_name,
                                  const std::string& image_sha256, const std::string& image_name,
                                  bool image_ready, Clock::time_point now) {
  auto [it, inserted] = clients_.try_emplace(client);
  Client& c = it->second;
  if (inserted) round_robin_.push_back(client);
  c.job_id = next_job_id_++;
  c.name = client_name;
  c.image_sha256 = image_sha256;
  c.image_name = image_name;
  c.library_set.clear();
  c.image_ready = image_ready;
  c.last_seen = now;
  return c.job_id;
}

void Scheduler::set_library_set(SessionId client, std::string digest) {
  if (auto it = clients_.find(client); it != clients_.end())
    it->second.library_set = std::move(digest);
}

void Scheduler::image_ready(const std::string& image_sha256) {
  for (auto& [session, client] : clients_) {
    if (client.image_sha256 != image_sha256) continue;
    client.image_ready = true;
    client.image_error.clear();
  }
}

void Scheduler::image_failed(const std::string& image_sha256, const std::string& reason) {
  for (auto& [session, client] : clients_) {
    if (client.image_sha256 != image_sha256 || client.image_ready) continue;
    client.image_error = "the program image could not be stored: " + reason;
    while (auto id = front_queued(client)) {
      client.queue.pop_front();
      --queued_;
      fail(*id, FailureKind::kUnavailable, "the program image could not be stored: " + reason);
    }
  }
}

void Scheduler::submit(SessionId client, wire::SubmitTasks& tasks, Clock::time_point now) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  Client& c = it->second;
  c.last_seen = now;
  // What the library never sends is refused (a failure per task, with the reason); nothing else
  // is touched. Whole-batch conditions are checked once; per task, a compare and the one probe
  // of by_client_id that submit always made, and the refusals' messages are built out of line.
  // A 1.x client leaves job_id 0: its connection's job is meant.
  if (!c.image_error.empty() || (tasks.job_id() != 0 && tasks.job_id() != c.job_id)) [[unlikely]] {
    refuse_batch(client, c, tasks);
    return;
  }
  // The library keeps a client within the window, except that tasks submitted by future
  // callbacks (on its I/O thread, which must not block) may overshoot it: twice the window is
  // the hard limit.
  const std::size_t limit = 2 * std::size_t{config_.window};
  for (auto& spec : *tasks.mutable_tasks()) {
    if (c.by_client_id.size() >= limit) [[unlikely]] {
      refuse_over_window(client, c, spec.task_id());
      continue;
    }
    if (spec.inputs_size() > 0 && !inputs_known(client, c, spec)) [[unlikely]]
      continue;
    if (spec.pushed_call_size() > 0 && (spec.inputs_size() > 0 || !spec.call().empty()))
        [[unlikely]] {
      refuse(client, c, spec.task_id(), FailureKind::kProtocol,
             "a pushed call (pushed_call_size) carries no call bytes and no inputs");
      continue;
    }
    auto [known, inserted] = c.by_client_id.try_emplace(spec.task_id(), 0);
    if (!inserted) [[unlikely]] {
      refuse_reused_id(client, c, spec.task_id());
      continue;
    }
    auto [id, task] = tasks_.emplace();
    known->second = id;
    task.client_task_id = spec.task_id();
    task.client = client;
    task.since = now;
    counters_.call_bytes_received += spec.call().size();
    task.call = std::move(*spec.mutable_call());
    task.server_count = spec.options().server_count();
    task.timeout_ms = spec.options().timeout_ms();
    task.retries_left =
        spec.options().retries() < 0 ? config_.default_retries : spec.options().retries();
    if (!spec.options().labels().empty()) {
      Labels labels;
      for (const auto& [k, v] : spec.options().labels()) labels.emplace_back(k, v);
      task.labels = label_sets_.acquire(std::move(labels));
    }
    ++counters_.submitted;
    if (spec.pushed_call_size() > 0) [[unlikely]]
      accept_pushed(id, task, spec);
    if (spec.inputs_size() > 0) [[unlikely]] {
      add_waiting(client, c, id, spec);
      continue;
    }
    c.queue.push_back(id);
    ++queued_;
  }
}

void Scheduler::refuse_batch(SessionId client_id, Client& client, const wire::SubmitTasks& tasks) {
  const bool unavailable = !client.image_error.empty();
  const std::string reason =
      unavailable ? client.image_error
                  : "SubmitTasks names job " + std::to_string(tasks.job_id()) +
                        ", but this connection's job is " + std::to_string(client.job_id);
  for (const auto& spec : tasks.tasks())
    refuse(client_id, client, spec.task_id(),
           unavailable ? FailureKind::kUnavailable : FailureKind::kProtocol, reason);
}

void Scheduler::refuse_over_window(SessionId client_id, Client& client,
                                   std::uint64_t client_task_id) {
  refuse(client_id, client, client_task_id, FailureKind::kProtocol,
         "the client already has " + std::to_string(client.by_client_id.size()) +
             " unfinished tasks, twice the master's window (client_window: " +
             std::to_string(config_.window) + ")");
}

void Scheduler::refuse_reused_id(SessionId client_id, Client& client,
                                 std::uint64_t client_task_id) {
  refuse(client_id, client, client_task_id, FailureKind::kProtocol,
         "task id " + std::to_string(client_task_id) +
             " is already used by an unfinished task of this client");
}

void Scheduler::refuse(SessionId client_id, Client& client, std::uint64_t client_task_id,
                       FailureKind kind, const std::string& message) {
  wire::TaskResults& batch = client.outgoing;
  if (batch.results_size() == 0) delivering_.push_back(client_id);
  wire::TaskResult* result = batch.add_results();
  result->set_task_id(client_task_id);
  result->mutable_failure()->set_kind(static_cast<std::uint32_t>(kind));
  result->mutable_failure()->set_message("the master refused this task: " + message);
  ++counters_.failed;
}

void Scheduler::cancel(SessionId client, const wire::CancelTasks& tasks) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  Client& c = it->second;
  for (std::uint64_t client_task_id : tasks.task_ids()) {
    auto found = c.by_client_id.find(client_task_id);
    if (found == c.by_client_id.end()) continue;
    const TaskId id = found->second;
    Task* task = tasks_.find(id);
    if (task == nullptr || task->remakes) continue;  // a rerun: the program's Future is done
    if (task->server != nullptr) {
      // Running: the server stops it and answers with a cancelled result, which frees the slot.
      pending_cancel_[task->server->second.session].add_task_ids(id);
      continue;
    }
    if (task->inputs_left > 0) {
      waiting_.erase(id);  // its inputs' lists of dependents skip it when they finish
    } else {
      --queued_;  // its id stays in the queue and is skipped there (front_queued)
    }
    fail(id, FailureKind::kCancelled, "cancelled before it ran");
  }
}

void Scheduler::client_seen(SessionId client, Clock::time_point now) {
  if (auto it = clients_.find(client); it != clients_.end()) it->second.last_seen = now;
}

std::optional<std::uint64_t> Scheduler::client_gone(SessionId client) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return std::nullopt;
  Client& c = it->second;
  const std::uint64_t job_id = c.job_id;
  for (const auto& [client_task_id, id] : c.by_client_id) {
    Task* task = tasks_.find(id);
    if (task == nullptr) continue;
    if (task->server == nullptr) {
      if (task->inputs_left > 0)
        waiting_.erase(id);
      else
        --queued_;
      forget(id, *task);
    } else {
      task->client = 0;  // its result, when it comes, frees the slot and goes nowhere
      std::string().swap(task->call);
    }
  }
  release(c);
  free_all_held(c);
  flush_frees();
  clients_.erase(it);
  round_robin_.erase(std::find(round_robin_.begin(), round_robin_.end(), client));
  delivering_.erase(std::remove(delivering_.begin(), delivering_.end(), client), delivering_.end());
  return job_id;
}

void Scheduler::server_available(const std::string& server_id, SessionId session) {
  const ServerRecord* record = registry_.find(server_id);
  if (record == nullptr) return;
  Server& server = servers_[server_id];
  server.session = session;
  server.minor = record->description.build().protocol_minor();
  server.data_address = record->description.data_address();
  server.base_slots = std::max<std::uint32_t>(1, record->description.capacity()) *
                      std::max<std::uint32_t>(1, config_.assign_ahead);
  server.slots = server.base_slots;
  server.rate_since = clock_.now();
  server.finished_since = 0;
  server.labels.clear();
  for (const auto& [k, v] : record->description.labels()) server.labels[k] = v;
}

void Scheduler::set_server_held(const std::string& server_id, bool held) {
  auto it = servers_.find(server_id);
  if (it != servers_.end()) it->second.held = held;
}

void Scheduler::set_refused(SessionId client, const std::string& server_id, bool refused,
                            Refusal reason) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  const auto bit = static_cast<std::uint8_t>(reason);
  auto& reasons = it->second.refused;
  if (refused) {
    reasons[server_id] |= bit;
    return;
  }
  auto found = reasons.find(server_id);
  if (found == reasons.end()) return;
  found->second &= static_cast<std::uint8_t>(~bit);
  if (found->second == 0) reasons.erase(found);
}

bool Scheduler::server_held(const std::string& server_id) const {
  auto it = servers_.find(server_id);
  return it != servers_.end() && it->second.held;
}

void Scheduler::server_lost(const std::string& server_id) {
  auto it = servers_.find(server_id);
  if (it == servers_.end()) return;
  // Rerun in each client's submission order (client task ids grow with submission).
  std::vector<std::pair<std::uint64_t, TaskId>> lost;
  lost.reserve(it->second.running.size());
  for (TaskId id : it->second.running)
    if (const Task* task = tasks_.find(id)) lost.emplace_back(task->client_task_id, id);
  std::sort(lost.begin(), lost.end());
  running_ -= it->second.running.size();
  ServerSlot* const slot = &*it;
  assigning_.erase(std::remove(assigning_.begin(), assigning_.end(), slot), assigning_.end());
  pending_cancel_.erase(it->second.session);
  for (auto& [session, client] : clients_)
    client.reserved.erase(std::remove(client.reserved.begin(), client.reserved.end(), slot),
                          client.reserved.end());
  // Ahead of what is still queued (at-least-once: the lost server may have finished some of
  // them; their late results are ignored).
  const auto requeued_at = clock_.now();
  for (auto entry = lost.rbegin(); entry != lost.rend(); ++entry) {
    const TaskId id = entry->second;
    Task& task = *tasks_.find(id);
    task.server = nullptr;
    if (task.client == 0) {
      forget(id, task);
      continue;
    }
    if (task.retries_left <= 0) {
      fail(id, FailureKind::kLost,
           "its server " + server_id + " was lost after " + std::to_string(task.attempts) +
               " attempt(s) and no retries are left");
      continue;
    }
    auto owner = clients_.find(task.client);
    if (owner == clients_.end()) {  // cannot happen; a task must never outlive its client here
      forget(id, task);
      continue;
    }
    --task.retries_left;
    task.since = requeued_at;
    owner->second.queue.push_front(id);
    ++queued_;
    ++counters_.rerun;
  }
  // Last: the tasks and clients above pointed at this entry.
  servers_.erase(it);
  held_results_lost(server_id);
}

bool Scheduler::server_draining(const std::string& server_id,
                                const google::protobuf::RepeatedField<std::uint64_t>& handed_back) {
  auto it = servers_.find(server_id);
  if (it == servers_.end()) return false;
  Server& server = it->second;
  const bool first = !server.draining;
  if (first) {
    server.draining = true;
    ServerSlot* const slot = &*it;
    for (auto& [session, client] : clients_) {
      auto held = std::find(client.reserved.begin(), client.reserved.end(), slot);
      if (held == client.reserved.end()) continue;
      client.reserved.erase(held);
      if (server.holders > 0) --server.holders;
      registry_.release(server_id, client.name);
    }
  }
  // In each client's submission order, ahead of what is queued: they were dispatched first.
  std::vector<std::pair<std::uint64_t, TaskId>> back;
  for (TaskId id : handed_back) {
    if (server.running.erase(id) == 0) continue;  // finished or lost meanwhile
    --running_;
    if (const Task* task = tasks_.find(id)) back.emplace_back(task->client_task_id, id);
  }
  std::sort(back.begin(), back.end());
  const auto requeued_at = clock_.now();
  for (auto entry = back.rbegin(); entry != back.rend(); ++entry) {
    Task& task = *tasks_.find(entry->second);
    task.server = nullptr;
    task.since = requeued_at;
    if (task.attempts > 0) --task.attempts;  // it never started
    if (task.client == 0) {
      forget(entry->second, task);
      continue;
    }
    clients_.at(task.client).queue.push_front(entry->second);
    ++queued_;
  }
  return first;
}

void Scheduler::results(const std::string& server_id, wire::TaskResults& results) {
  auto server = servers_.find(server_id);
  if (server != servers_.end())
    adapt_slots(server->second, static_cast<std::size_t>(results.results_size()));
  for (auto& result : *results.mutable_results()) {
    counters_.result_bytes_received += result.outcome().size();
    const std::uint64_t id = result.task_id();
    // Only the server the task is assigned to may finish it: a result from a server that was
    // declared lost arrives after the task moved on and is dropped.
    if (server == servers_.end() || server->second.running.erase(id) == 0) continue;
    --running_;
    Task* task = tasks_.find(id);
    if (task == nullptr) continue;
    if (task->client == 0) {
      if (result.has_held()) free_on_server(result.held());  // no one will ask for it
      forget(id, *task);
      continue;
    }
    // A task that could not fetch a held input lost with its server waits for the input to be
    // made again (or runs again): the loss is its input's, not its own.
    if (task->held_inputs && result.has_failure() &&
        result.failure().kind() == static_cast<std::uint32_t>(FailureKind::kLost) &&
        retry_after_input_loss(id, *task)) [[unlikely]]
      continue;
    if (result.call_missing() && task->pushed) [[unlikely]] {
      call_missing(id, *task, server_id);
      continue;
    }
    result.set_server_id(server_id);
    finish(id, std::move(result));
  }
}

void Scheduler::adapt_slots(Server& server, std::size_t finished) {
  server.finished_since += static_cast<std::uint32_t>(finished);
  const auto now = clock_.now();
  const auto elapsed = now - server.rate_since;
  if (elapsed < kRateWindow) return;
  // Idle time counts in the measurement: a server that was idle gets fewer slots, not more.
  const double per_horizon = static_cast<double>(server.finished_since) *
                             std::chrono::duration<double>(kAheadHorizon).count() /
                             std::chrono::duration<double>(elapsed).count();
  const std::uint32_t ceiling = std::max(server.base_slots, kMaxAhead);
  server.slots = std::clamp(static_cast<std::uint32_t>(per_horizon), server.base_slots, ceiling);
  server.rate_since = now;
  server.finished_since = 0;
}

void Scheduler::expire_reservations(Clock::time_point now, std::chrono::milliseconds ttl) {
  for (auto& [session, client] : clients_)
    if (!client.reserved.empty() && now - client.last_seen > ttl) release(client);
}

Scheduler::ServerSlot* Scheduler::pick_server(Client& client, TaskId task_id, const Task& task) {
  const std::size_t wanted =
      task.server_count != 0 ? task.server_count : config_.default_server_count;
  auto fits = [&](const Server& s) {
    if (s.draining || s.held || s.running.size() >= s.slots) return false;
    // Only a server that reads held inputs may run a task that has them.
    if (task.held_inputs && s.minor < common::kHeldResultsMinor) return false;
    // Only a server that takes pushed calls may run a task whose call is pushed.
    if (task.pushed && s.minor < common::kPushedCallsMinor) return false;
    for (const auto& [k, v] : label_sets_.get(task.labels)) {
      auto label = s.labels.find(k);
      if (label == s.labels.end() || label->second != v) return false;
    }
    return true;
  };
  if (task.held_inputs) [[unlikely]] {
    // Where its inputs lie, when that server has room: they need not travel.
    ServerSlot* holder = holder_of_inputs(client, task_id);
    if (holder != nullptr && fits(holder->second) &&
        (client.refused.empty() || !client.refused.contains(holder->first)))
      return holder;
  }
  ServerSlot* best = nullptr;
  auto consider = [&](ServerSlot& slot) {
    if (fits(slot.second) && (client.refused.empty() || !client.refused.contains(slot.first)) &&
        (best == nullptr || slot.second.running.size() < best->second.running.size()))
      best = &slot;
  };
  if (wanted == 0) {
    if (client.reserved.size() < servers_.size()) reserve(client, servers_.size());
    for (auto& slot : servers_) consider(slot);
    return best;
  }
  if (client.reserved.size() < wanted) reserve(client, wanted);
  const std::size_t usable = std::min(wanted, client.reserved.size());
  for (std::size_t i = 0; i < usable; ++i) consider(*client.reserved[i]);
  return best;
}

void Scheduler::reserve(Client& client, std::size_t count) {
  // Free servers first (held by nobody), then shared ones with the fewest holders; bigger
  // servers before smaller ones.
  std::vector<ServerSlot*> candidates;
  for (auto& slot : servers_)
    if (!slot.second.draining && !slot.second.held && !client.refused.contains(slot.first) &&
        std::find(client.reserved.begin(), client.reserved.end(), &slot) == client.reserved.end())
      candidates.push_back(&slot);
  std::stable_sort(candidates.begin(), candidates.end(), [](const auto* a, const auto* b) {
    if (a->second.holders != b->second.holders) return a->second.holders < b->second.holders;
    return a->second.base_slots > b->second.base_slots;
  });
  const auto now = clock_.now();
  for (ServerSlot* slot : candidates) {
    if (client.reserved.size() >= count) break;
    client.reserved.push_back(slot);
    ++slot->second.holders;
    registry_.reserve(slot->first, client.name, now);
  }
}

void Scheduler::release(Client& client) {
  for (ServerSlot* slot : client.reserved) {
    if (slot->second.holders > 0) --slot->second.holders;
    registry_.release(slot->first, client.name);
  }
  client.reserved.clear();
}

void Scheduler::finish(TaskId task_id, wire::TaskResult&& result) {
  Task* found = tasks_.find(task_id);
  if (found == nullptr) return;
  Task& task = *found;
  ++(result.outcome().empty() && !result.has_held() ? counters_.failed : counters_.succeeded);
  auto client = clients_.find(task.client);
  if (observer_ != nullptr) [[likely]]
    observe_finish(task_id, task, client != clients_.end() ? &client->second : nullptr, result);
  if (task.remakes && client != clients_.end()) [[unlikely]] {
    // Not the program's: its Future finished with the first run.
    remade(task.client, client->second, task, result);
    client->second.by_client_id.erase(task.client_task_id);
    if (client->second.by_client_id.empty()) release(client->second);
    const std::uint64_t made = task.client_task_id;
    forget(task_id, task);
    settle(client->second, made);
    return;
  }
  if (client != clients_.end()) {
    Client& owner = client->second;
    if (result.has_held()) [[unlikely]]
      keep_held(owner, task_id, task, result);
    if (!owner.dependents.empty()) feed_dependents(owner, task, result);
    if (!owner.released.empty() && owner.released.erase(task.client_task_id) > 0 &&
        (!result.outcome().empty() || result.has_held())) {
      // No future of it is left in the program; the tasks that needed its value have it.
      result.clear_outcome();
      result.set_value_withheld(true);
      ++counters_.values_withheld;
      if (result.has_held()) {
        result.clear_held();
        owner.held.at(task.client_task_id).client_holds = false;
        settle(owner, task.client_task_id);
      }
    }
    result.set_task_id(task.client_task_id);
    result.set_attempts(task.attempts);
    wire::TaskResults& batch = client->second.outgoing;
    if (batch.results_size() == 0) delivering_.push_back(task.client);
    *batch.add_results() = std::move(result);
    client->second.by_client_id.erase(task.client_task_id);
    if (client->second.by_client_id.empty()) release(client->second);
  }
  forget(task_id, task);
}

void Scheduler::observe_finish(TaskId task_id, const Task& task, const Client* client,
                               const wire::TaskResult& result) {
  static const std::string kNone;
  const std::string& server_id = task.server != nullptr ? task.server->first : result.server_id();
  std::string_view function_name;
  if (task.pushed) [[unlikely]]
    if (auto pushed = pushed_.find(task_id); pushed != pushed_.end())
      function_name = pushed->second.function_name;
  observer_->task_finished(
      FinishedTask{client != nullptr ? client->job_id : 0, task.client_task_id,
                   client != nullptr ? client->name : kNone, task.call, server_id,
                   task.server != nullptr ? clock_.now() - task.since : Clock::duration{}, result,
                   function_name});
}

void Scheduler::forget(TaskId task_id, Task& task) {
  if (task.held_inputs) [[unlikely]]
    unbind_held_inputs(task_id);
  if (task.pushed) [[unlikely]]
    pushed_.erase(task_id);
  label_sets_.release(task.labels);
  tasks_.erase(task_id);
}

std::optional<Scheduler::TaskId> Scheduler::front_queued(Client& client) {
  while (!client.queue.empty()) {
    const TaskId id = client.queue.front();
    // A live task whose id is in a queue is queued: one that runs left the queue when it was
    // dispatched, and one that finished or was cancelled is no longer live.
    if (tasks_.find(id) != nullptr) return id;
    client.queue.pop_front();
  }
  return std::nullopt;
}

void Scheduler::fail(TaskId task_id, FailureKind kind, const std::string& message) {
  wire::TaskResult result;
  result.mutable_failure()->set_kind(static_cast<std::uint32_t>(kind));
  result.mutable_failure()->set_message(message);
  finish(task_id, std::move(result));
}

void Scheduler::dispatch() {
  const auto now = observer_ != nullptr ? clock_.now() : Clock::time_point{};
  bool progress = true;
  while (progress && !servers_.empty()) {
    progress = false;
    for (std::size_t i = 0, n = round_robin_.size(); i < n; ++i) {
      const SessionId session = round_robin_.front();
      round_robin_.pop_front();
      round_robin_.push_back(session);
      Client& client = clients_.at(session);
      if (!client.image_ready) continue;
      const std::optional<TaskId> id = front_queued(client);
      if (!id) continue;
      Task& task = *tasks_.find(*id);
      ServerSlot* slot = pick_server(client, *id, task);
      if (slot == nullptr) continue;
      Server* server = &slot->second;
      client.queue.pop_front();
      --queued_;
      ++task.attempts;
      task.server = slot;
      if (observer_ != nullptr) [[likely]] {
        observer_->task_dispatched(now - task.since);
        task.since = now;
      }
      server->running.insert(*id);
      ++running_;
      if (server->outgoing.tasks_size() == 0) assigning_.push_back(slot);
      wire::Assignment* a = server->outgoing.add_tasks();
      a->set_task_id(*id);
      a->set_image_sha256(client.image_sha256);
      a->set_image_name(client.image_name);
      if (!client.library_set.empty()) a->set_library_set(client.library_set);
      a->set_call(task.call);
      a->set_timeout_ms(task.timeout_ms);
      // Only a server that announced held results keeps them (an older one would ignore it).
      if (client.hold_threshold != 0 && server->minor >= common::kHeldResultsMinor)
        a->set_hold_threshold(client.hold_threshold);
      if (task.held_inputs) [[unlikely]]
        add_held_inputs(client, *id, *a);
      if (task.pushed) [[unlikely]]
        issue_ticket(session, client, *id, *slot, *a);
      progress = true;
    }
  }
  for (ServerSlot* slot : assigning_) {
    Server& server = slot->second;
    outbox_.assign(server.session, server.outgoing);
    std::size_t bytes = 0;
    for (const auto& a : server.outgoing.tasks()) bytes += a.call().size();
    flush_batch(server.outgoing, bytes);
  }
  assigning_.clear();
  // After the assignments: a server hears of a task before its client pushes the call.
  for (SessionId session : ticketing_) {
    wire::CallTickets& batch = clients_.at(session).tickets;
    outbox_.call_tickets(session, batch);
    batch.Clear();
  }
  ticketing_.clear();
  for (auto& [session, batch] : pending_cancel_) outbox_.cancel(session, std::move(batch));
  pending_cancel_.clear();
  flush_frees();
  for (SessionId session : delivering_) {
    wire::TaskResults& batch = clients_.at(session).outgoing;
    for (const auto& r : batch.results()) counters_.result_bytes_delivered += r.outcome().size();
    outbox_.deliver(session, batch);
    std::size_t bytes = 0;
    for (const auto& r : batch.results()) bytes += r.outcome().size();
    flush_batch(batch, bytes);
  }
  delivering_.clear();
}

std::optional<std::pair<SessionId, std::uint64_t>> Scheduler::owner_of(
    std::uint64_t task_id, const std::string& server_id) const {
  const Task* task = tasks_.find(task_id);
  if (task == nullptr || task->client == 0) return std::nullopt;
  if (task->server == nullptr || task->server->first != server_id) return std::nullopt;
  return std::make_pair(task->client, task->client_task_id);
}

std::uint64_t Scheduler::job_of(SessionId client) const {
  auto it = clients_.find(client);
  return it == clients_.end() ? 0 : it->second.job_id;
}

bool Scheduler::draining(const std::string& server_id) const {
  auto it = servers_.find(server_id);
  return it != servers_.end() && it->second.draining;
}

std::vector<ClientSummary> Scheduler::client_summaries() const {
  std::vector<ClientSummary> out;
  out.reserve(clients_.size());
  for (const auto& [session, client] : clients_) {
    ClientSummary summary{
        session, client.job_id, client.name, client.image_name, client.by_client_id.size(), {}};
    for (const ServerSlot* slot : client.reserved) summary.reserved.push_back(slot->first);
    out.push_back(std::move(summary));
  }
  return out;
}

}  // namespace clupy::master
