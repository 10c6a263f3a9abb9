// A task's failure travels in one of two places of a TaskResult: inside the worker's outcome
// (what the task threw: CallOutcome, msgpack) or in TaskFailure (what no worker could report: a
// crash, a timeout, a loss, a cancellation, a refusal by the master). Everyone who reads a result
// (the client's futures, the master's dependents, services, the dashboard's failed tasks) reads
// it here, so both places mean the same everywhere.
#pragma once

#include "clupy.pb.h"
#include "clupy/detail/call.hpp"

namespace clupy::common {

// The result's value (a view into result.outcome(), valid while `result` is) or its failure. An
// outcome that cannot be decoded is a kProtocol failure saying why. The failure's server is the
// result's server_id when neither place names one; its task_id and function are left as the
// message has them (the reader knows its own ids and names).
detail::OutcomeView read_task_result(const wire::TaskResult& result);

}  // namespace clupy::common
