// The worker side of a server's worker process: read RunTask frames from the server's socket,
// execute each call, answer TaskDone. Entered from clupy::init when CLUPY_WORKER_FD is set.
#pragma once

namespace clupy::worker {

// Serves tasks on `fd` until the server closes it, then exits the process.
[[noreturn]] void run_worker_loop(int fd);

}  // namespace clupy::worker
