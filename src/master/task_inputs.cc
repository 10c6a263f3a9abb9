// The scheduler's futures as arguments and held results (docs/protocol.md#futures-as-arguments,
// #held-results): tasks waiting for their inputs, inputs' values put into calls, and the
// references to results that stay on the servers that made them.
#include <algorithm>
#include <optional>
#include <string_view>

#include "clupy/detail/call.hpp"
#include "common/task_result.hpp"
#include "common/version.hpp"
#include "master/scheduler.hpp"

namespace clupy::master {

bool Scheduler::inputs_known(SessionId client_id, Client& client, const wire::TaskSpec& spec) {
  for (const auto& input : spec.inputs()) {
    if (input.task_id() != spec.task_id() && client.by_client_id.contains(input.task_id()))
      continue;
    // A finished input whose result is held: known while it is held, whether the program named
    // it so (TaskInput.held) or sent this task while the input was still running here. In the
    // latter case the program may drop its last Future of the input once this task is on its
    // way, and its ReleaseResults follows this task: bound now, the result is still there.
    if (client.held.contains(input.task_id())) continue;
    // Finished (its result is on its way to the client, or there) or never submitted.
    wire::TaskResults& batch = client.outgoing;
    if (batch.results_size() == 0) delivering_.push_back(client_id);
    wire::TaskResult* result = batch.add_results();
    result->set_task_id(spec.task_id());
    result->set_inputs_gone(true);
    result->mutable_failure()->set_kind(static_cast<std::uint32_t>(FailureKind::kDependency));
    result->mutable_failure()->set_message("input task " + std::to_string(input.task_id()) +
                                           " is not an unfinished task of this client");
    return false;
  }
  return true;
}

void Scheduler::add_waiting(SessionId client_id, Client& client, TaskId id,
                            const wire::TaskSpec& spec) {
  // A held input lost with its server is made again first (its producer then counts as an
  // unfinished task, which this one waits for); this may add tasks.
  std::string unmade;
  for (const auto& input : spec.inputs()) {
    if (client.by_client_id.contains(input.task_id())) continue;
    auto entry = client.held.find(input.task_id());
    if (entry == client.held.end() || entry->second.present) continue;
    std::string why;
    if (!recompute(client_id, client, input.task_id(), why)) {
      unmade = lost_message(client, input.task_id(), why);
      break;
    }
  }
  Task& task = *tasks_.find(id);
  std::vector<InputSlot>& slots = waiting_[id];
  slots.reserve(static_cast<std::size_t>(spec.inputs_size()));
  for (const auto& input : spec.inputs()) {
    // Not unfinished: held (inputs_known checked it).
    const bool held = !client.by_client_id.contains(input.task_id());
    slots.push_back({input.task_id(), input.position(), input.index(), {}, held, held});
    if (held) {
      if (!unmade.empty()) continue;
      bind_held_input(client, id, task, slots.back());
      ++counters_.inputs_referenced;
      continue;
    }
    std::vector<std::uint64_t>& waiters = client.dependents[input.task_id()];
    // Once per input, however many places it fills.
    if (std::find(waiters.begin(), waiters.end(), spec.task_id()) == waiters.end()) {
      waiters.push_back(spec.task_id());
      ++task.inputs_left;
    }
  }
  if (!unmade.empty()) {
    waiting_.erase(id);
    fail(id, FailureKind::kLost, unmade);
    return;
  }
  if (task.inputs_left == 0) inputs_complete(client, id, task);
}

void Scheduler::bind_held_input(Client& client, TaskId id, Task& task, const InputSlot& slot) {
  std::vector<HeldSlot>& bound = held_inputs_[id];
  const bool first = std::none_of(bound.begin(), bound.end(),
                                  [&](const HeldSlot& h) { return h.input == slot.input; });
  bound.push_back({slot.input, slot.position, slot.index});
  task.held_inputs = true;
  if (first) ++client.held.at(slot.input).users;
}

bool Scheduler::inputs_complete(Client& client, TaskId id, Task& task) {
  auto slots = waiting_.find(id);
  if (slots == waiting_.end()) return false;
  std::vector<detail::ArgumentFill> fills;
  fills.reserve(slots->second.size());
  for (const InputSlot& slot : slots->second)
    if (!slot.held) fills.push_back({slot.position, slot.index, slot.value});
  try {
    if (!fills.empty()) task.call = detail::splice_call_arguments(task.call, fills);
  } catch (const std::exception& e) {
    waiting_.erase(slots);
    fail(id, FailureKind::kProtocol,
         std::string("cannot put its inputs' values into the call: ") + e.what());
    return false;
  }
  waiting_.erase(slots);
  task.since = clock_.now();
  // A rerun that makes a lost result again goes first: tasks submitted earlier wait for it.
  if (task.remakes) [[unlikely]]
    client.queue.push_front(id);
  else
    client.queue.push_back(id);
  ++queued_;
  return true;
}

void Scheduler::feed_dependents(Client& client, const Task& input, const wire::TaskResult& result) {
  auto found = client.dependents.find(input.client_task_id);
  if (found == client.dependents.end()) return;
  const std::vector<std::uint64_t> waiters = std::move(found->second);
  client.dependents.erase(found);
  // The input's value, or where it is held, or why it has none.
  const bool held = result.has_held() && client.held.contains(input.client_task_id);
  std::optional<std::string_view> value;
  Failure failure;
  if (!held) {  // a held result has nothing to read here: the dependents name it
    auto outcome = common::read_task_result(result);
    if (outcome.ok) {
      value = outcome.result;
    } else {
      failure = std::move(outcome.failure);
      failure.task_id = input.client_task_id;
    }
  }
  for (const std::uint64_t waiter : waiters) {
    auto known = client.by_client_id.find(waiter);
    if (known == client.by_client_id.end()) continue;  // cancelled or failed meanwhile
    const TaskId id = known->second;
    Task* task = tasks_.find(id);
    auto slots = waiting_.find(id);
    if (task == nullptr || slots == waiting_.end()) continue;
    if (!value && !held) {
      waiting_.erase(slots);
      fail(
          id, FailureKind::kDependency,
          "input task " + std::to_string(input.client_task_id) + " failed: " + failure.to_string());
      continue;
    }
    for (InputSlot& slot : slots->second) {
      if (slot.input != input.client_task_id || slot.filled) continue;
      slot.filled = true;
      if (held) {
        slot.held = true;
        bind_held_input(client, id, *task, slot);
        ++counters_.inputs_referenced;
        continue;
      }
      slot.value = std::string(*value);
      ++counters_.inputs_spliced;
    }
    if (--task->inputs_left > 0) continue;
    inputs_complete(client, id, *task);
  }
}

void Scheduler::release_results(SessionId client, const wire::ReleaseResults& release) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  Client& c = it->second;
  for (std::uint64_t client_task_id : release.task_ids()) {
    // A finished task whose result a server holds (or held): the program dropped its last
    // Future. First, as a rerun of it may be under way.
    if (auto held = c.held.find(client_task_id); held != c.held.end()) {
      held->second.client_holds = false;
      settle(c, client_task_id);
      continue;
    }
    if (c.by_client_id.contains(client_task_id)) c.released.insert(client_task_id);
  }
  flush_frees();
}

void Scheduler::set_hold_threshold(SessionId client, std::uint64_t bytes) {
  if (auto it = clients_.find(client); it != clients_.end()) it->second.hold_threshold = bytes;
}

void Scheduler::keep_held(Client& client, TaskId id, Task& task, const wire::TaskResult& result) {
  HeldResult& entry = client.held[task.client_task_id];
  entry.ref = result.held();
  entry.client_holds = true;
  entry.present = true;
  ++counters_.results_held;
  held_bytes_ += entry.ref.size();
  // What makes it again if its server is lost (lineage), while the master can afford it.
  if (task.retries_left <= 0) {
    entry.no_recipe = "its task has no retries left";
    return;
  }
  if (task.pushed) {
    entry.no_recipe = "its call went from the program straight to its server and was not kept";
    return;
  }
  if (lineage_bytes_ + task.call.size() > config_.lineage_memory) {
    entry.no_recipe = "its call was not kept: the master's lineage_memory is full";
    return;
  }
  auto recipe = std::make_unique<Recipe>();
  recipe->server_count = task.server_count;
  recipe->timeout_ms = task.timeout_ms;
  recipe->retries_left = task.retries_left;
  if (task.labels != LabelSets::kNone)
    recipe->labels = label_sets_.acquire(label_sets_.get(task.labels));
  if (auto bound = held_inputs_.find(id); bound != held_inputs_.end()) {
    recipe->held_inputs = bound->second;
    // Each input is named by the recipe until the recipe goes (drop_recipe).
    std::vector<std::uint64_t> seen;
    for (const HeldSlot& slot : recipe->held_inputs) {
      if (std::find(seen.begin(), seen.end(), slot.input) != seen.end()) continue;
      seen.push_back(slot.input);
      ++client.held.at(slot.input).lineage_users;
    }
  }
  // The task is forgotten right after: its call moves here.
  recipe->call = std::move(task.call);
  lineage_bytes_ += recipe->call.size();
  ++lineage_calls_;
  entry.recipe = std::move(recipe);
}

void Scheduler::settle(Client& client, std::uint64_t client_task_id) {
  auto held = client.held.find(client_task_id);
  if (held == client.held.end()) return;
  HeldResult& entry = held->second;
  if (entry.users > 0 || entry.client_holds || entry.rerunning || !entry.fetches.empty()) return;
  if (entry.present) {
    free_on_server(entry.ref);
    held_bytes_ -= entry.ref.size();
    entry.present = false;
  }
  if (entry.lineage_users > 0) return;  // a recipe that names it may need it made again
  std::unique_ptr<Recipe> recipe = std::move(entry.recipe);
  client.held.erase(held);
  drop_recipe(client, std::move(recipe));
}

void Scheduler::drop_recipe(Client& client, std::unique_ptr<Recipe> recipe) {
  if (!recipe) return;
  lineage_bytes_ -= recipe->call.size();
  --lineage_calls_;
  label_sets_.release(recipe->labels);
  std::vector<std::uint64_t> seen;
  for (const HeldSlot& slot : recipe->held_inputs) {
    if (std::find(seen.begin(), seen.end(), slot.input) != seen.end()) continue;
    seen.push_back(slot.input);
    auto input = client.held.find(slot.input);
    if (input == client.held.end()) continue;
    if (input->second.lineage_users > 0) --input->second.lineage_users;
    settle(client, slot.input);
  }
}

void Scheduler::free_on_server(const wire::ResultRef& ref) {
  auto server = servers_.find(ref.server_id());
  if (server == servers_.end()) return;  // lost: nothing to free
  pending_free_[server->second.session].add_result_ids(ref.result_id());
  ++counters_.results_freed;
}

void Scheduler::flush_frees() {
  for (auto& [session, batch] : pending_free_) outbox_.free_results(session, std::move(batch));
  pending_free_.clear();
}

void Scheduler::unbind_held_inputs(TaskId id) {
  auto bound = held_inputs_.find(id);
  if (bound == held_inputs_.end()) return;
  const std::vector<HeldSlot> slots = std::move(bound->second);
  held_inputs_.erase(bound);
  const Task* task = tasks_.find(id);
  auto client = task != nullptr ? clients_.find(task->client) : clients_.end();
  if (client == clients_.end()) return;
  std::vector<std::uint64_t> seen;
  for (const HeldSlot& slot : slots) {
    if (std::find(seen.begin(), seen.end(), slot.input) != seen.end()) continue;
    seen.push_back(slot.input);
    auto held = client->second.held.find(slot.input);
    if (held == client->second.held.end()) continue;
    if (held->second.users > 0) --held->second.users;
    settle(client->second, slot.input);
  }
}

void Scheduler::free_all_held(Client& client) {
  for (auto& [client_task_id, entry] : client.held) {
    if (entry.present) {
      free_on_server(entry.ref);
      held_bytes_ -= entry.ref.size();
    }
    if (entry.recipe) {
      lineage_bytes_ -= entry.recipe->call.size();
      --lineage_calls_;
      label_sets_.release(entry.recipe->labels);
    }
  }
  client.held.clear();
}

Scheduler::ServerSlot* Scheduler::holder_of_inputs(Client& client, TaskId id) {
  auto bound = held_inputs_.find(id);
  if (bound == held_inputs_.end()) return nullptr;
  // Where the most of its input bytes lie.
  const HeldResult* biggest = nullptr;
  for (const HeldSlot& slot : bound->second) {
    auto held = client.held.find(slot.input);
    if (held != client.held.end() && held->second.present &&
        (biggest == nullptr || held->second.ref.size() > biggest->ref.size()))
      biggest = &held->second;
  }
  if (biggest == nullptr) return nullptr;
  auto server = servers_.find(biggest->ref.server_id());
  return server == servers_.end() ? nullptr : &*server;
}

void Scheduler::add_held_inputs(Client& client, TaskId id, wire::Assignment& assignment) {
  auto bound = held_inputs_.find(id);
  if (bound == held_inputs_.end()) return;
  for (const HeldSlot& slot : bound->second) {
    auto held = client.held.find(slot.input);
    if (held == client.held.end() || !held->second.present) continue;  // see held_results_lost
    wire::HeldInput* input = assignment.add_held_inputs();
    input->set_position(slot.position);
    input->set_index(slot.index);
    input->set_input_task_id(slot.input);
    *input->mutable_ref() = held->second.ref;
  }
}

void Scheduler::held_results_lost(const std::string& server_id) {
  for (auto& [session, client] : clients_) {
    std::vector<std::uint64_t> lost;
    for (auto& [client_task_id, entry] : client.held) {
      if (!entry.present || entry.ref.server_id() != server_id) continue;
      lost.push_back(client_task_id);
      held_bytes_ -= entry.ref.size();
      entry.present = false;
      entry.gone = "was held by server " + server_id + ", which was lost";
    }
    if (lost.empty()) continue;
    counters_.results_lost += lost.size();
    // Tasks bound to a lost result and not running wait for it to be made again, or fail kLost
    // when it cannot be. (A running one fails kLost when its server cannot fetch the input, and
    // is then put back to wait: retry_after_input_loss.) Results only the program holds are
    // made again when it asks for them (fetch_held) or passes them to a new task.
    std::vector<std::pair<TaskId, std::vector<std::uint64_t>>> bound_to_lost;
    for (const auto& [id, slots] : held_inputs_) {
      const Task* task = tasks_.find(id);
      if (task == nullptr || task->client != session || task->server != nullptr) continue;
      std::vector<std::uint64_t> inputs;
      for (const HeldSlot& slot : slots)
        if (std::find(lost.begin(), lost.end(), slot.input) != lost.end() &&
            std::find(inputs.begin(), inputs.end(), slot.input) == inputs.end())
          inputs.push_back(slot.input);
      if (!inputs.empty()) bound_to_lost.emplace_back(id, std::move(inputs));
    }
    std::sort(bound_to_lost.begin(), bound_to_lost.end());  // deterministic order of reruns
    for (const auto& [id, inputs] : bound_to_lost) {
      if (tasks_.find(id) == nullptr) continue;  // failed meanwhile (a failed rerun's waiter)
      std::string unmade;
      for (const std::uint64_t input : inputs) {
        std::string why;
        if (recompute(session, client, input, why)) continue;
        unmade = lost_message(client, input, why);
        break;
      }
      Task* task = tasks_.find(id);
      if (task == nullptr) continue;
      if (unmade.empty()) {
        rewait(client, id, task->inputs_left == 0, inputs);
        continue;
      }
      if (task->inputs_left > 0)
        waiting_.erase(id);
      else
        --queued_;  // its id stays in the queue and is skipped there
      fail(id, FailureKind::kLost, unmade);
    }
  }
}

std::optional<HeldLocation> Scheduler::held_result(SessionId client,
                                                   std::uint64_t client_task_id) const {
  auto it = clients_.find(client);
  if (it == clients_.end()) return std::nullopt;
  auto held = it->second.held.find(client_task_id);
  if (held == it->second.held.end() || !held->second.present) return std::nullopt;
  auto server = servers_.find(held->second.ref.server_id());
  if (server == servers_.end()) return std::nullopt;
  return HeldLocation{server->second.session, held->second.ref};
}

}  // namespace clupy::master
