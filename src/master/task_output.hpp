// The last lines of each task's stdout and stderr, kept by the master for the dashboard and
// `clupy logs` (docs/operations.md#dashboard). Bounded three ways: lines per task, tasks per job
// (a job's oldest task's lines go first), and bytes in total (the oldest task's lines go first).
// Not thread-safe: owned by the master's io_context thread.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clupy::master {

struct TaskOutputLimits {
  std::size_t lines_per_task = 50;                 // task_output_lines
  std::size_t tasks_per_job = 1000;                // task_output_tasks_per_job
  std::size_t total_bytes = 16ull << 20;           // task_output_bytes
  static constexpr std::size_t kLineBytes = 2048;  // a longer line is cut there
};

// A line of output; the last line of a stream may be unfinished (no newline seen yet).
struct OutputLine {
  bool is_stderr = false;
  std::string text;  // without its newline
};

// What is kept of one task's output.
struct TaskOutputTail {
  std::vector<OutputLine> lines;  // in arrival order
  bool truncated = false;         // earlier lines were dropped
};

class TaskOutputs {
 public:
  using Key = std::pair<std::uint64_t, std::uint64_t>;  // job id, the client's task id

  explicit TaskOutputs(TaskOutputLimits limits) : limits_(limits) {}

  // A piece of a task's stdout or stderr, cut anywhere.
  void add(std::uint64_t job_id, std::uint64_t task_id, bool is_stderr, std::string_view text);
  // nullopt when nothing is kept for the task. job_id 0: the latest job with such a task.
  std::optional<std::pair<Key, TaskOutputTail>> find(std::uint64_t job_id,
                                                     std::uint64_t task_id) const;
  // The kept output as text, stderr lines marked "[stderr] ", at most `max_bytes` (the end).
  static std::string as_text(const TaskOutputTail& tail, std::size_t max_bytes);

  std::size_t bytes() const { return bytes_; }
  std::size_t tasks() const { return entries_.size(); }
  const TaskOutputLimits& limits() const { return limits_; }

 private:
  struct Entry {
    std::uint64_t generation = 0;
    std::deque<OutputLine> lines;
    std::string partial[2];  // the unfinished last line of stdout, stderr
    bool truncated = false;
    std::size_t bytes = 0;
  };
  void push_line(Entry& entry, bool is_stderr, std::string line);
  void evict(const Key& key);
  // Drops entries (oldest first) until the bounds hold.
  void enforce_total();

  TaskOutputLimits limits_;
  std::map<Key, Entry> entries_;
  // Entries in the order they were created (stale pairs, whose generation no longer matches,
  // are skipped): all of them, and per job.
  std::deque<std::pair<Key, std::uint64_t>> order_;
  std::map<std::uint64_t, std::deque<std::pair<Key, std::uint64_t>>> job_order_;
  std::map<std::uint64_t, std::size_t> job_tasks_;
  std::uint64_t next_generation_ = 1;
  std::size_t bytes_ = 0;
};

}  // namespace clupy::master
