// The worker loop's side of clupy::this_task(): which task this worker process runs now.
#pragma once

#include <cstdint>

namespace clupy::worker {

// Before a call: the task it belongs to and the fencing token of the master that dispatched it.
void set_current_task(std::uint64_t task_id, std::int64_t master_fencing_token);
// After it: no task runs.
void clear_current_task();

}  // namespace clupy::worker
