#include "master/task_output.hpp"

namespace clupy::master {

namespace {
// What a kept line costs besides its text (its deque slot and string header).
constexpr std::size_t kLineOverhead = 48;
}  // namespace

void TaskOutputs::add(std::uint64_t job_id, std::uint64_t task_id, bool is_stderr,
                      std::string_view text) {
  if (text.empty() || limits_.lines_per_task == 0 || limits_.total_bytes == 0) return;
  const Key key{job_id, task_id};
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    std::size_t& count = job_tasks_[job_id];
    if (count >= limits_.tasks_per_job) {
      // The job's oldest task that is still kept makes room.
      auto& order = job_order_[job_id];
      while (!order.empty()) {
        const auto [old_key, generation] = order.front();
        order.pop_front();
        auto old = entries_.find(old_key);
        if (old != entries_.end() && old->second.generation == generation) {
          evict(old_key);
          break;
        }
      }
    }
    it = entries_.emplace(key, Entry{}).first;
    it->second.generation = next_generation_++;
    order_.emplace_back(key, it->second.generation);
    job_order_[job_id].emplace_back(key, it->second.generation);
    ++job_tasks_[job_id];
  }
  Entry& entry = it->second;
  std::string& partial = entry.partial[is_stderr];
  while (!text.empty()) {
    const std::size_t newline = text.find('\n');
    const std::string_view piece = text.substr(0, newline);
    if (partial.size() < TaskOutputLimits::kLineBytes) {
      const std::size_t room = TaskOutputLimits::kLineBytes - partial.size();
      partial.append(piece.substr(0, room));
      entry.bytes += std::min(room, piece.size());
      bytes_ += std::min(room, piece.size());
    }
    if (newline == std::string_view::npos) break;
    bytes_ -= partial.size();
    entry.bytes -= partial.size();
    push_line(entry, is_stderr, std::move(partial));
    partial.clear();
    text.remove_prefix(newline + 1);
  }
  enforce_total();
}

void TaskOutputs::push_line(Entry& entry, bool is_stderr, std::string line) {
  const std::size_t cost = line.size() + kLineOverhead;
  entry.lines.push_back(OutputLine{is_stderr, std::move(line)});
  entry.bytes += cost;
  bytes_ += cost;
  while (entry.lines.size() > limits_.lines_per_task) {
    const std::size_t dropped = entry.lines.front().text.size() + kLineOverhead;
    entry.lines.pop_front();
    entry.bytes -= dropped;
    bytes_ -= dropped;
    entry.truncated = true;
  }
}

void TaskOutputs::evict(const Key& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  bytes_ -= it->second.bytes;
  if (auto count = job_tasks_.find(key.first); count != job_tasks_.end() && --count->second == 0) {
    job_tasks_.erase(count);
    job_order_.erase(key.first);
  }
  entries_.erase(it);
}

void TaskOutputs::enforce_total() {
  while (bytes_ > limits_.total_bytes && !order_.empty()) {
    const auto [key, generation] = order_.front();
    order_.pop_front();
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.generation == generation) evict(key);
  }
  // Stale pairs of evicted entries would otherwise pile up in a long run.
  while (!order_.empty()) {
    auto it = entries_.find(order_.front().first);
    if (it != entries_.end() && it->second.generation == order_.front().second) break;
    order_.pop_front();
  }
}

std::optional<std::pair<TaskOutputs::Key, TaskOutputTail>> TaskOutputs::find(
    std::uint64_t job_id, std::uint64_t task_id) const {
  const Entry* found = nullptr;
  Key key{job_id, task_id};
  if (job_id != 0) {
    if (auto it = entries_.find(key); it != entries_.end()) found = &it->second;
  } else {
    for (auto it = entries_.rbegin(); it != entries_.rend(); ++it)
      if (it->first.second == task_id) {
        found = &it->second;
        key = it->first;
        break;
      }
  }
  if (found == nullptr) return std::nullopt;
  TaskOutputTail tail;
  tail.truncated = found->truncated;
  tail.lines.assign(found->lines.begin(), found->lines.end());
  for (int stream = 0; stream < 2; ++stream)
    if (!found->partial[stream].empty())
      tail.lines.push_back(OutputLine{stream == 1, found->partial[stream]});
  return std::make_pair(key, std::move(tail));
}

std::string TaskOutputs::as_text(const TaskOutputTail& tail, std::size_t max_bytes) {
  std::string text;
  for (auto it = tail.lines.rbegin(); it != tail.lines.rend(); ++it) {
    std::string line = (it->is_stderr ? "[stderr] " : "") + it->text + "\n";
    if (text.size() + line.size() > max_bytes) break;
    text.insert(0, line);
  }
  return text;
}

}  // namespace clupy::master
