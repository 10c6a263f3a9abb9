// `clupy logs TASK`: the last lines of a task's stdout and stderr, as the master kept them
// (docs/operations.md#dashboard).
#pragma once

#include <string>
#include <vector>

namespace clupy::client {

// `args` are the words after `clupy logs`. Prints the lines (stderr ones on stderr) and returns
// the exit code: 0, 1 when the master keeps nothing for the task or cannot be asked, 2 for
// bad arguments.
int logs_command(const std::vector<std::string>& args);

}  // namespace clupy::client
