#include "clupy/this_task.hpp"

#include <atomic>
#include <cstdlib>

#include "worker/current_task.hpp"

namespace clupy {
namespace {
// Written by the worker loop around each call, read by any thread of the task: no lock, and a
// task id of 0 means no task runs.
std::atomic<std::uint64_t> running_task_id{0};
std::atomic<std::int64_t> running_master_token{0};
}  // namespace

namespace worker {
void set_current_task(std::uint64_t task_id, std::int64_t master_fencing_token) {
  running_master_token.store(master_fencing_token, std::memory_order_relaxed);
  running_task_id.store(task_id, std::memory_order_release);
}
void clear_current_task() { running_task_id.store(0, std::memory_order_release); }
}  // namespace worker

std::optional<TaskInfo> this_task() {
  const std::uint64_t id = running_task_id.load(std::memory_order_acquire);
  if (id == 0) return std::nullopt;
  TaskInfo info;
  info.task_id = id;
  info.master_fencing_token = running_master_token.load(std::memory_order_relaxed);
  // Set by the server for every worker it starts (worker/spawned_worker.cc).
  if (const char* server = std::getenv("CLUPY_WORKER_SERVER")) info.server_id = server;
  return info;
}

}  // namespace clupy
