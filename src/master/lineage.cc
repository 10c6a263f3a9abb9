// The scheduler's lineage (docs/protocol.md#held-results): a held result lost with its server is
// made again by running its producer again, from the recipe kept while the result is needed
// (its call and options; its own held inputs are named, and made again first when they are
// gone too).
#include <algorithm>

#include "common/task_result.hpp"
#include "master/scheduler.hpp"

namespace clupy::master {

namespace {
// The distinct inputs named by held slots, in order.
template <class Slots>
std::vector<std::uint64_t> distinct_inputs(const Slots& slots) {
  std::vector<std::uint64_t> out;
  for (const auto& slot : slots)
    if (std::find(out.begin(), out.end(), slot.input) == out.end()) out.push_back(slot.input);
  return out;
}

bool contains(const std::vector<std::uint64_t>& ids, std::uint64_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}
}  // namespace

std::string Scheduler::lost_message(const Client& client, std::uint64_t input,
                                    const std::string& why) {
  auto held = client.held.find(input);
  const std::string where = held != client.held.end() && !held->second.gone.empty()
                                ? held->second.gone
                                : std::string("is no longer held");
  return "input task " + std::to_string(input) + "'s result " + where +
         (why.empty() ? std::string() : " (" + why + ")");
}

bool Scheduler::recompute(SessionId client_id, Client& client, std::uint64_t client_task_id,
                          std::string& why) {
  auto held = client.held.find(client_task_id);
  if (held == client.held.end()) {
    why = "its result is no longer kept";
    return false;
  }
  if (held->second.rerunning) return true;
  if (!held->second.recipe) {
    why = held->second.no_recipe;
    return false;
  }
  if (held->second.recipe->retries_left <= 0) {
    why = "its task has no retries left";
    return false;
  }
  // A recipe names only results made before it, so this recursion ends.
  held->second.rerunning = true;
  const std::vector<std::uint64_t> inputs = distinct_inputs(held->second.recipe->held_inputs);
  std::vector<std::uint64_t> awaited;  // its inputs that are made again first
  for (const std::uint64_t input : inputs) {
    auto entry = client.held.find(input);
    if (entry != client.held.end() && entry->second.present) continue;
    std::string inner;
    if (!recompute(client_id, client, input, inner)) {
      client.held.at(client_task_id).rerunning = false;
      why = "its input task " + std::to_string(input) + " cannot be made again: " + inner;
      return false;
    }
    awaited.push_back(input);
  }
  Recipe& recipe = *client.held.at(client_task_id).recipe;
  --recipe.retries_left;  // this run is one of its producer's retries
  auto [id, task] = tasks_.emplace();
  client.by_client_id[client_task_id] = id;
  task.client_task_id = client_task_id;
  task.client = client_id;
  task.call = recipe.call;
  task.server_count = recipe.server_count;
  task.timeout_ms = recipe.timeout_ms;
  task.retries_left = recipe.retries_left;
  if (recipe.labels != LabelSets::kNone)
    task.labels = label_sets_.acquire(label_sets_.get(recipe.labels));
  task.remakes = true;
  task.since = clock_.now();
  ++counters_.submitted;
  ++counters_.results_recomputed;
  std::vector<InputSlot>& slots = waiting_[id];
  for (const HeldSlot& slot : recipe.held_inputs) {
    const bool present = !contains(awaited, slot.input);
    slots.push_back({slot.input, slot.position, slot.index, {}, present, present});
    if (present) bind_held_input(client, id, task, slots.back());
  }
  for (const std::uint64_t input : awaited) {
    client.dependents[input].push_back(client_task_id);
    ++task.inputs_left;
  }
  if (task.inputs_left == 0) inputs_complete(client, id, task);
  return true;
}

void Scheduler::remade(SessionId client_id, Client& client, Task& task, wire::TaskResult& result) {
  const std::uint64_t made = task.client_task_id;
  auto held = client.held.find(made);
  if (held == client.held.end()) return;  // cannot happen: kept while its rerun runs
  HeldResult& entry = held->second;
  entry.rerunning = false;
  FetchAnswer answer;
  answer.client = client_id;
  answer.client_task_id = made;
  answer.request_ids = std::move(entry.fetches);
  entry.fetches.clear();
  if (result.has_held()) {
    entry.ref = result.held();
    entry.present = true;
    entry.gone.clear();
    ++counters_.results_held;
    held_bytes_ += entry.ref.size();
    if (entry.recipe) entry.recipe->retries_left = task.retries_left;
    if (auto server = servers_.find(entry.ref.server_id()); server != servers_.end())
      answer.location = HeldLocation{server->second.session, entry.ref};
    if (!answer.request_ids.empty()) outbox_.answer_fetches(std::move(answer));
    feed_dependents(client, task, result);
    return;
  }
  auto outcome = common::read_task_result(result);
  if (outcome.ok) {
    // Under the hold threshold this time: the value goes to what waits for it; the entry keeps
    // no bytes and is made again if it is needed again.
    if (entry.recipe) entry.recipe->retries_left = task.retries_left;
    answer.bytes.set_outcome(result.outcome());
    if (!answer.request_ids.empty()) outbox_.answer_fetches(std::move(answer));
    feed_dependents(client, task, result);
    return;
  }
  const std::string message =
      lost_message(client, made, "its rerun failed: " + outcome.failure.to_string());
  std::unique_ptr<Recipe> recipe = std::move(entry.recipe);
  entry.no_recipe = "its rerun failed";
  answer.bytes.mutable_failure()->set_kind(static_cast<std::uint32_t>(FailureKind::kLost));
  answer.bytes.mutable_failure()->set_message(message);
  if (!answer.request_ids.empty()) outbox_.answer_fetches(std::move(answer));
  // The entry may be forgotten from here on (what named it may go).
  fail_waiters(client, made, message);
  drop_recipe(client, std::move(recipe));
}

void Scheduler::fail_waiters(Client& client, std::uint64_t client_task_id,
                             const std::string& message) {
  auto found = client.dependents.find(client_task_id);
  if (found == client.dependents.end()) return;
  const std::vector<std::uint64_t> waiters = std::move(found->second);
  client.dependents.erase(found);
  for (const std::uint64_t waiter : waiters) {
    auto known = client.by_client_id.find(waiter);
    if (known == client.by_client_id.end()) continue;  // ended meanwhile
    const TaskId id = known->second;
    if (tasks_.find(id) == nullptr || waiting_.erase(id) == 0) continue;
    fail(id, FailureKind::kLost, message);
  }
}

void Scheduler::rewait(Client& client, TaskId id, bool queued,
                       const std::vector<std::uint64_t>& lost) {
  Task* task = tasks_.find(id);
  if (task == nullptr) return;
  if (queued) {
    --queued_;
    client.queue.erase(std::remove(client.queue.begin(), client.queue.end(), id),
                       client.queue.end());
  }
  auto bound = held_inputs_.find(id);
  // Its slots: still there while it waits for other inputs; else rebuilt from its held slots
  // (its plain inputs' values are in its call already).
  auto waiting = waiting_.find(id);
  if (waiting == waiting_.end()) {
    std::vector<InputSlot> slots;
    if (bound != held_inputs_.end())
      for (const HeldSlot& slot : bound->second)
        slots.push_back({slot.input, slot.position, slot.index, {}, true, true});
    waiting = waiting_.emplace(id, std::move(slots)).first;
  }
  for (InputSlot& slot : waiting->second) {
    if (!contains(lost, slot.input)) continue;
    slot.filled = false;
    slot.held = false;
  }
  if (bound != held_inputs_.end()) {
    auto& slots = bound->second;
    slots.erase(std::remove_if(slots.begin(), slots.end(),
                               [&](const HeldSlot& slot) { return contains(lost, slot.input); }),
                slots.end());
    if (slots.empty()) {
      held_inputs_.erase(bound);
      task->held_inputs = false;
    }
  }
  for (const std::uint64_t input : lost) {
    // Its entry stays: its rerun runs.
    if (auto held = client.held.find(input); held != client.held.end() && held->second.users > 0)
      --held->second.users;
    client.dependents[input].push_back(task->client_task_id);
    ++task->inputs_left;
  }
}

bool Scheduler::retry_after_input_loss(TaskId id, Task& task) {
  auto owner = clients_.find(task.client);
  auto bound = held_inputs_.find(id);
  if (owner == clients_.end() || bound == held_inputs_.end()) return false;
  Client& client = owner->second;
  std::vector<std::uint64_t> lost;
  for (const std::uint64_t input : distinct_inputs(bound->second)) {
    auto held = client.held.find(input);
    if (held == client.held.end() || !held->second.present) lost.push_back(input);
  }
  if (lost.empty()) {
    // Every input is where the master knows it: its holder's loss is not seen yet, or its data
    // port could not be reached from there. One more run, counted as a retry.
    if (task.retries_left <= 0) return false;
    --task.retries_left;
    task.server = nullptr;
    task.since = clock_.now();
    client.queue.push_front(id);
    ++queued_;
    ++counters_.rerun;
    return true;
  }
  const SessionId client_id = task.client;
  task.server = nullptr;
  for (const std::uint64_t input : lost) {
    std::string why;
    if (recompute(client_id, client, input, why)) continue;
    fail(id, FailureKind::kLost, lost_message(client, input, why));
    return true;
  }
  rewait(client, id, false, lost);
  return true;
}

Scheduler::FetchPlan Scheduler::fetch_held(SessionId client_id, std::uint64_t client_task_id,
                                           std::uint64_t request_id) {
  FetchPlan plan;
  const std::string what = "the result of task " + std::to_string(client_task_id);
  auto client = clients_.find(client_id);
  if (client == clients_.end() || !client->second.held.contains(client_task_id)) {
    plan.failure = what + " is no longer held";
    return plan;
  }
  auto held = client->second.held.find(client_task_id);
  if (held->second.present) {
    plan.location = held_result(client_id, client_task_id);
    if (plan.location) return plan;
  }
  std::string why;
  if (recompute(client_id, client->second, client_task_id, why)) {
    client->second.held.at(client_task_id).fetches.push_back(request_id);
    plan.waiting = true;
    return plan;
  }
  const HeldResult& entry = client->second.held.at(client_task_id);
  plan.failure = what + " " + (entry.gone.empty() ? std::string("is no longer held") : entry.gone) +
                 " (" + why + ")";
  return plan;
}

}  // namespace clupy::master
