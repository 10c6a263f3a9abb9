// A worker process as the server's dispatch sees it (worker/dispatch.hpp): something that runs
// the tasks it is sent, in order, and may die. The real one is a SpawnedWorker
// (worker/spawned_worker.hpp); tests give dispatch fakes, so its decisions are tested without
// processes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

#include "clupy.pb.h"

namespace clupy::worker {

class WorkerProcess {
 public:
  virtual ~WorkerProcess() = default;

  // For logs.
  virtual pid_t pid() const = 0;
  // Sends the task to run after those sent before (RunTask). Its assignment stays with
  // dispatch, to rerun it elsewhere should the worker die before reporting it.
  virtual void send(const wire::Assignment& task) = 0;
  // The task the worker says (on its progress page) it started last; none when it keeps no
  // page (a worker of an older libclupy, or one that could not map it) or has started nothing.
  virtual std::optional<std::uint64_t> running() const = 0;
  // Kills it (SIGKILL). Its death is reported to dispatch later, as for any death.
  virtual void kill() = 0;
  // Kills it and closes its link: it is retired, not needed (its death follows).
  virtual void retire() = 0;
  // Kills it and waits for it, at once (the server is stopping): no death is reported.
  virtual void stop_now() = 0;
};

}  // namespace clupy::worker
