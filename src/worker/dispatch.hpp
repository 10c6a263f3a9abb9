// The server's dispatch of tasks to its worker processes, and the blame for a worker's death:
// which task fails with it, which are rerun. Pure bookkeeping: it acts only through its
// DispatchOutbox (reports to the master, new workers, timeouts to arm) and the WorkerProcess
// interface, and reads the time only from its callers (`now`), as the master's Scheduler does,
// so tests drive it with fakes and a made-up clock. Not thread-safe: owned by the server's
// io_context thread.
//
// The rules (docs/architecture.md, "Server"):
// - at most `capacity` workers; a worker runs its tasks in order, one at a time, and holds
//   about kQueuedWork of work beyond the running task by its measured time per task (1 to
//   kPipelineDepth tasks; 2 until measured): tasks sent to a worker cannot move;
// - a task goes to the least loaded worker of its program, or to a new worker while slots are
//   free; when all slots are taken, an idle worker of another program (or of an older
//   environment) is retired to make room;
// - a worker's death fails one task: the one the server passed a verdict on (timeout, cancel),
//   else the one its progress page says it was running, else (a worker without a page) its
//   first unreported one. The others it held are rerun, ahead of what waits, in their order;
// - a worker that exits 127 before it attached (its program cannot load here) fails its
//   image's tasks with what it wrote to stderr, for kStartRetryAfter.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "clupy.pb.h"
#include "clupy/errors.hpp"
#include "worker/worker_process.hpp"

namespace clupy::worker {

using Clock = std::chrono::steady_clock;

// Tasks sent ahead to one worker, at most. More hides more round trips and lets the worker
// answer a whole batch with one write; fewer keeps a crash from delaying more innocent tasks
// (they are rerun on another worker, not failed).
inline constexpr std::size_t kPipelineDepth = 32;
// Work queued behind a worker's running task, at most, by its measured time per task. Tasks
// sent to a worker cannot move to another, so long tasks queued behind one worker while
// another runs out of work would leave a slot idle at the end of a job; queueing only about
// this much keeps each worker busy without that.
inline constexpr auto kQueuedWork = std::chrono::milliseconds(2);
// A worker's time per task is measured over windows of this many results or this much busy
// time, whichever comes first.
inline constexpr std::uint32_t kRateWindowTasks = 64;
inline constexpr auto kRateWindow = std::chrono::milliseconds(100);
// A program whose workers cannot start here (a shared library it links is missing) is tried
// again after this long: the library may have been installed meanwhile.
inline constexpr auto kStartRetryAfter = std::chrono::seconds(30);

// A worker's measured time per task, and from it how many tasks it may hold.
class TaskPace {
 public:
  // Tasks the worker may hold: see kQueuedWork.
  std::size_t pipeline_limit() const;
  // Its front task started at `now` (its busy time begins).
  void front_started(Clock::time_point now) { front_since_ = now; }
  // A result arrived at `now`: updates the time per task from the time the worker spent busy
  // (from each task becoming the front one to its result; idle time does not count), over
  // windows of kRateWindowTasks results or kRateWindow of busy time.
  void count_result(Clock::time_point now);
  double seconds_per_task() const { return seconds_per_task_; }  // 0: not measured yet

 private:
  Clock::time_point front_since_{};
  Clock::duration busy_in_window_{};
  std::uint32_t results_in_window_ = 0;
  double seconds_per_task_ = 0;
};

// How a worker process ended, as its reaper saw it.
struct WorkerExit {
  bool known = false;     // waitpid told; false: it vanished
  bool signaled = false;  // killed by `signal`; else exited with `exit_code`
  int signal = 0;
  int exit_code = 0;
  // It reported a result or announced itself on its progress page: it did load.
  bool attached = false;
  std::string early_stderr;  // what it wrote to stderr before its first result (capped)
};

// Where dispatch's decisions go.
class DispatchOutbox {
 public:
  // A task's end, for the master: its outcome, or a failure decided here.
  virtual void report(wire::TaskResult&& result) = 0;
  // Starts a worker of the image (ready in the cache) with the job's shipped libraries
  // (Assignment.library_set; "": none); null when it cannot be started now.
  virtual std::shared_ptr<WorkerProcess> spawn(const std::string& image_sha256,
                                               const std::string& image_name,
                                               const std::string& library_set) = 0;
  // The worker's front task changed: `front` has started (its output is attributed to it, its
  // timeout runs from now), or null: it holds nothing. The timeout, when it passes, comes back
  // as Dispatcher::deadline_passed.
  virtual void front_changed(WorkerProcess& worker, const wire::Assignment* front) = 0;

 protected:
  virtual ~DispatchOutbox() = default;
};

class Dispatcher {
 public:
  // `host` names this machine in the message of a program that cannot start here.
  Dispatcher(DispatchOutbox& outbox, std::string server_id, std::string host, unsigned capacity);

  // A task to run: it waits until its image is ready (image_ready) and a worker has room.
  // A task without a 32-byte image digest fails at once (kProtocol).
  void add(wire::Assignment&& task, Clock::time_point now);
  // The image is in the cache: its tasks may start.
  void image_ready(const std::string& image_sha256, Clock::time_point now);
  // The image cannot be had: its waiting tasks fail (kUnavailable) with `reason`.
  void image_failed(const std::string& image_sha256, const std::string& reason);
  // The workers' environment changed: idle workers are retired, busy ones take no new tasks.
  void environment_changed(Clock::time_point now);

  // A message from `worker`: a TaskDone for its front task is reported (unless cancelled or
  // abandoned) and the next front starts; anything else retires the worker.
  void worker_message(WorkerProcess& worker, wire::Envelope& message, Clock::time_point now);
  // Its link closed: it takes no more tasks; worker_exited follows once it is reaped.
  void worker_closing(WorkerProcess& worker);
  // The worker is gone: blames one task (see the rules above), reruns the others, frees its
  // slot.
  void worker_exited(WorkerProcess& worker, const WorkerExit& exit, Clock::time_point now);
  // The timeout armed for `task_id` (front_changed) passed.
  enum class Deadline {
    kStale,      // that task is no longer the worker's front one: nothing to do
    kLookAgain,  // its result is held or on the way in the worker's batch: ask again shortly
    kKilled,     // the worker was killed; the task fails with kTimeout when its death comes
  };
  Deadline deadline_passed(WorkerProcess& worker, std::uint64_t task_id);

  // The master cancels a task: a waiting one, or one queued in a worker, fails at once
  // (kCancelled; a queued one may still run, unreported); a running one's worker is killed and
  // the task fails with kCancelled when its death comes.
  void cancel(std::uint64_t task_id);
  // The master is gone: waiting tasks are dropped and workers holding tasks killed, unreported.
  void abandon_all();
  // Stops every worker at once (WorkerProcess::stop_now); nothing more is dispatched.
  void shutdown();
  // Draining: takes back the tasks not given to a worker yet and returns their ids. Those a
  // worker holds run here (it may be starting one this instant).
  std::vector<std::uint64_t> hand_back_unstarted();
  // Dispatches what can go now (called by the other calls; public for a retry timer).
  void dispatch(Clock::time_point now);

  struct Counters {
    std::uint64_t workers_started = 0;
    // Started to take the place of a worker that crashed or that the server killed (timeout,
    // cancel): at most one per such death.
    std::uint64_t workers_restarted = 0;
    std::uint64_t workers_crashed = 0;  // died unasked (a signal, an exit, a failed start)
    std::uint64_t workers_killed = 0;   // killed by the server to end a task (timeout, cancel)
    struct PerImage {
      std::string program;              // the image's file name, as the client named it
      std::uint64_t tasks_run = 0;      // reported by a worker (a value or an exception)
      std::uint64_t tasks_crashed = 0;  // ended with their worker (crash, timeout)
    };
    std::map<std::string, PerImage> images;  // by SHA-256 (32 bytes)
  };
  const Counters& counters() const { return counters_; }

  unsigned busy() const;  // workers holding a task
  // Tasks given and not reported yet (waiting, queued in a worker or running).
  std::size_t unfinished() const;
  std::size_t worker_count() const { return workers_.size(); }
  std::size_t waiting() const { return waiting_.size(); }
  // The tasks `worker` holds, in order (for tests and logs); empty for an unknown worker.
  std::vector<std::uint64_t> queue_of(const WorkerProcess& worker) const;

 private:
  struct Worker {
    std::shared_ptr<WorkerProcess> process;
    std::string image;
    std::string library_set;  // the job's shipped libraries (Assignment.library_set); "": none
    // Tasks sent to this worker and not reported yet, in order. The worker runs them in order
    // and reports them in batches: the front one is running, or done with its result on the
    // way; the progress page says which one runs.
    std::deque<wire::Assignment> queue;
    TaskPace pace;
    // Set when the server itself ends a task (timeout, cancel): reported for verdict_task
    // instead of a crash.
    std::optional<wire::TaskFailure> verdict;
    std::uint64_t verdict_task = 0;
    bool abandoned = false;  // its tasks' results must not be reported
    bool closing = false;    // its link closed; it is being reaped
    // Killed to make room or to stop: takes no task while its death is on its way.
    bool retired = false;
    std::uint64_t environment_generation = 0;  // the dispatcher's when it was started
    bool usable() const { return !closing && !retired; }
    // The running task, if it is still unreported here; otherwise the worker is between tasks,
    // about to start the first unreported one.
    std::optional<std::uint64_t> running_unreported() const;
  };

  Worker* find(const WorkerProcess& process);
  void start_task(Worker& worker, wire::Assignment&& task, Clock::time_point now);
  void front_started(Worker& worker, Clock::time_point now);
  void retire(Worker& worker);
  void fail_task(std::uint64_t task_id, FailureKind kind, const std::string& message,
                 int exit_code = 0, int signal = 0);
  // A worker of `worker.image` exited 127 before it loaded: its tasks fail, and its image's
  // for kStartRetryAfter.
  void cannot_start(Worker& worker, const WorkerExit& exit, Clock::time_point now);
  void blame(Worker& worker, const WorkerExit& exit);

  DispatchOutbox& outbox_;
  std::string server_id_;
  std::string host_;
  unsigned capacity_;
  std::deque<wire::Assignment> waiting_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unordered_set<std::string> ready_images_;
  struct StartError {
    std::string message;
    Clock::time_point at;
  };
  // By image and library set: another set (a job shipping what was missing) may well start.
  std::map<std::pair<std::string, std::string>, StartError> start_errors_;
  // Reported cancelled, possibly still queued in a worker.
  std::unordered_set<std::uint64_t> cancelled_;
  bool stopped_ = false;
  std::uint64_t environment_generation_ = 0;  // counts environment_changed
  std::uint64_t replacements_owed_ = 0;  // workers that died unasked or were killed, not replaced
  Counters counters_;
};

}  // namespace clupy::worker
