#include "master/scheduler.hpp"

#include <algorithm>

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
}  // namespace

Scheduler::Scheduler(Registry& registry, Outbox& outbox, SchedulerConfig config)
    : registry_(registry), outbox_(outbox), config_(config) {}

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
  c.image_ready = image_ready;
  c.last_seen = now;
  return c.job_id;
}

void Scheduler::image_ready(const std::string& image_sha256) {
  for (auto& [session, client] : clients_)
    if (client.image_sha256 == image_sha256) client.image_ready = true;
}

void Scheduler::image_failed(const std::string& image_sha256, const std::string& reason) {
  for (auto& [session, client] : clients_) {
    if (client.image_sha256 != image_sha256 || client.image_ready) continue;
    while (!client.queue.empty()) {
      const std::uint64_t id = client.queue.front();
      client.queue.pop_front();
      --queued_;
      fail(id, FailureKind::kUnavailable, "the program image could not be stored: " + reason);
    }
  }
}

void Scheduler::submit(SessionId client, wire::SubmitTasks& tasks, Clock::time_point now) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  Client& c = it->second;
  c.last_seen = now;
  for (auto& spec : *tasks.mutable_tasks()) {
    const std::uint64_t id = next_task_id_++;
    Task& task = tasks_[id];
    task.client_task_id = spec.task_id();
    task.client = client;
    task.call = std::move(*spec.mutable_call());
    task.server_count = spec.options().server_count();
    task.timeout_ms = spec.options().timeout_ms();
    task.retries_left =
        spec.options().retries() < 0 ? config_.default_retries : spec.options().retries();
    for (const auto& [k, v] : spec.options().labels()) task.labels.emplace_back(k, v);
    c.by_client_id[spec.task_id()] = id;
    c.queue.push_back(id);
    ++queued_;
    ++counters_.submitted;
  }
}

void Scheduler::cancel(SessionId client, const wire::CancelTasks& tasks) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  Client& c = it->second;
  for (std::uint64_t client_task_id : tasks.task_ids()) {
    auto found = c.by_client_id.find(client_task_id);
    if (found == c.by_client_id.end()) continue;
    const std::uint64_t id = found->second;
    Task& task = tasks_.at(id);
    if (!task.server_id.empty()) {
      // Running: the server stops it and answers with a cancelled result, which frees the slot.
      auto server = servers_.find(task.server_id);
      if (server != servers_.end()) pending_cancel_[server->second.session].add_task_ids(id);
      continue;
    }
    c.queue.erase(std::find(c.queue.begin(), c.queue.end(), id));
    --queued_;
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
    Task& task = tasks_.at(id);
    if (task.server_id.empty()) {
      tasks_.erase(id);
      --queued_;
    } else {
      task.client = 0;  // its result, when it comes, frees the slot and goes nowhere
      task.call.clear();
      task.call.shrink_to_fit();
    }
  }
  release(c);
  clients_.erase(it);
  round_robin_.erase(std::find(round_robin_.begin(), round_robin_.end(), client));
  pending_results_.erase(client);
  return job_id;
}

void Scheduler::server_available(const std::string& server_id, SessionId session) {
  const ServerRecord* record = registry_.find(server_id);
  if (record == nullptr) return;
  Server& server = servers_[server_id];
  server.session = session;
  server.base_slots = std::max<std::uint32_t>(1, record->description.capacity()) *
                      std::max<std::uint32_t>(1, config_.assign_ahead);
  server.slots = server.base_slots;
  server.rate_since = Clock::now();
  server.finished_since = 0;
  server.labels.clear();
  for (const auto& [k, v] : record->description.labels()) server.labels[k] = v;
}

void Scheduler::server_lost(const std::string& server_id) {
  auto it = servers_.find(server_id);
  if (it == servers_.end()) return;
  std::vector<std::uint64_t> lost(it->second.running.begin(), it->second.running.end());
  std::sort(lost.begin(), lost.end());
  running_ -= lost.size();
  pending_assign_.erase(it->second.session);
  pending_cancel_.erase(it->second.session);
  servers_.erase(it);
  for (auto& [session, client] : clients_)
    client.reserved.erase(std::remove(client.reserved.begin(), client.reserved.end(), server_id),
                          client.reserved.end());
  // Rerun in submission order, ahead of what is still queued (at-least-once: the lost server
  // may have finished some of them; their late results are ignored).
  for (auto id = lost.rbegin(); id != lost.rend(); ++id) {
    auto found = tasks_.find(*id);
    if (found == tasks_.end()) continue;
    Task& task = found->second;
    task.server_id.clear();
    if (task.client == 0) {
      tasks_.erase(found);
      continue;
    }
    if (task.retries_left <= 0) {
      fail(*id, FailureKind::kLost,
           "its server " + server_id + " was lost after " + std::to_string(task.attempts) +
               " attempt(s) and no retries are left");
      continue;
    }
    --task.retries_left;
    clients_.at(task.client).queue.push_front(*id);
    ++queued_;
    ++counters_.rerun;
  }
}

void Scheduler::results(const std::string& server_id, wire::TaskResults& results) {
  auto server = servers_.find(server_id);
  if (server != servers_.end())
    adapt_slots(server->second, static_cast<std::size_t>(results.results_size()));
  for (auto& result : *results.mutable_results()) {
    const std::uint64_t id = result.task_id();
    // Only the server the task is assigned to may finish it: a result from a server that was
    // declared lost arrives after the task moved on and is dropped.
    if (server == servers_.end() || server->second.running.erase(id) == 0) continue;
    --running_;
    auto task = tasks_.find(id);
    if (task == tasks_.end()) continue;
    if (task->second.client == 0) {
      tasks_.erase(task);
      continue;
    }
    result.set_server_id(server_id);
    finish(id, std::move(result));
  }
}

void Scheduler::adapt_slots(Server& server, std::size_t finished) {
  server.finished_since += static_cast<std::uint32_t>(finished);
  const auto now = Clock::now();
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

Scheduler::ServerSlot* Scheduler::pick_server(Client& client, const Task& task) {
  const std::size_t wanted =
      task.server_count != 0 ? task.server_count : config_.default_server_count;
  auto fits = [&](const Server& s) {
    if (s.running.size() >= s.slots) return false;
    for (const auto& [k, v] : task.labels) {
      auto label = s.labels.find(k);
      if (label == s.labels.end() || label->second != v) return false;
    }
    return true;
  };
  ServerSlot* best = nullptr;
  auto consider = [&](ServerSlot& slot) {
    if (fits(slot.second) &&
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
  for (std::size_t i = 0; i < usable; ++i) consider(*servers_.find(client.reserved[i]));
  return best;
}

void Scheduler::reserve(Client& client, std::size_t count) {
  // Free servers first (held by nobody), then shared ones with the fewest holders; bigger
  // servers before smaller ones.
  std::vector<std::pair<std::string, Server*>> candidates;
  for (auto& [id, s] : servers_)
    if (std::find(client.reserved.begin(), client.reserved.end(), id) == client.reserved.end())
      candidates.emplace_back(id, &s);
  std::stable_sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
    if (a.second->holders != b.second->holders) return a.second->holders < b.second->holders;
    return a.second->base_slots > b.second->base_slots;
  });
  const auto now = Clock::now();
  for (auto& [id, s] : candidates) {
    if (client.reserved.size() >= count) break;
    client.reserved.push_back(id);
    ++s->holders;
    registry_.reserve(id, client.name, now);
  }
}

void Scheduler::release(Client& client) {
  for (const auto& id : client.reserved) {
    auto it = servers_.find(id);
    if (it != servers_.end() && it->second.holders > 0) --it->second.holders;
    registry_.release(id, client.name);
  }
  client.reserved.clear();
}

void Scheduler::finish(std::uint64_t task_id, wire::TaskResult&& result) {
  auto it = tasks_.find(task_id);
  if (it == tasks_.end()) return;
  Task& task = it->second;
  ++(result.outcome().empty() ? counters_.failed : counters_.succeeded);
  auto client = clients_.find(task.client);
  if (client != clients_.end()) {
    result.set_task_id(task.client_task_id);
    result.set_attempts(task.attempts);
    *pending_results_[task.client].add_results() = std::move(result);
    client->second.by_client_id.erase(task.client_task_id);
    if (client->second.by_client_id.empty()) release(client->second);
  }
  tasks_.erase(it);
}

void Scheduler::fail(std::uint64_t task_id, FailureKind kind, const std::string& message) {
  wire::TaskResult result;
  result.mutable_failure()->set_kind(static_cast<std::uint32_t>(kind));
  result.mutable_failure()->set_message(message);
  finish(task_id, std::move(result));
}

void Scheduler::dispatch() {
  bool progress = true;
  while (progress && !servers_.empty()) {
    progress = false;
    for (std::size_t i = 0, n = round_robin_.size(); i < n; ++i) {
      const SessionId session = round_robin_.front();
      round_robin_.pop_front();
      round_robin_.push_back(session);
      Client& client = clients_.at(session);
      if (!client.image_ready || client.queue.empty()) continue;
      const std::uint64_t id = client.queue.front();
      Task& task = tasks_.at(id);
      ServerSlot* slot = pick_server(client, task);
      if (slot == nullptr) continue;
      Server* server = &slot->second;
      client.queue.pop_front();
      --queued_;
      ++task.attempts;
      task.server_id = slot->first;
      server->running.insert(id);
      ++running_;
      wire::Assignment* a = pending_assign_[server->session].add_tasks();
      a->set_task_id(id);
      a->set_image_sha256(client.image_sha256);
      a->set_image_name(client.image_name);
      a->set_call(task.call);
      a->set_timeout_ms(task.timeout_ms);
      progress = true;
    }
  }
  for (auto& [session, batch] : pending_assign_) outbox_.assign(session, std::move(batch));
  pending_assign_.clear();
  for (auto& [session, batch] : pending_cancel_) outbox_.cancel(session, std::move(batch));
  pending_cancel_.clear();
  for (auto& [session, batch] : pending_results_) outbox_.deliver(session, std::move(batch));
  pending_results_.clear();
}

std::optional<std::pair<SessionId, std::uint64_t>> Scheduler::owner_of(
    std::uint64_t task_id) const {
  auto it = tasks_.find(task_id);
  if (it == tasks_.end() || it->second.client == 0) return std::nullopt;
  return std::make_pair(it->second.client, it->second.client_task_id);
}

}  // namespace clupy::master
