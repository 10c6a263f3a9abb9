// What a function running as a task can learn about its own execution.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace clupy {

struct TaskInfo {
  // The master's id of the task: what `clupy logs`, the dashboard and failures name.
  std::uint64_t task_id = 0;
  // The server whose worker runs this execution (its server_id).
  std::string server_id;
  // The fencing token of the master that dispatched this execution (docs/coordination.md): every
  // newly elected master has a larger one, so executions with different tokens were dispatched by
  // different masters. 0 when the server predates this field.
  std::int64_t master_fencing_token = 0;
};

// Inside a function running as a task (in a server's worker): this execution. Anywhere else (the
// program's own threads, a plain call of the same function): std::nullopt. Threads the task
// starts see it too while the task runs (a worker runs one task at a time).
std::optional<TaskInfo> this_task();

}  // namespace clupy
