#include "worker/dispatch.hpp"

#include <signal.h>

#include <algorithm>
#include <cstring>

#include "common/log.hpp"

namespace clupy::worker {

namespace {
auto log() { return common::logger("server"); }

std::string signal_name(int signo) {
  const char* abbrev = sigabbrev_np(signo);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(signo);
}
}  // namespace

std::size_t TaskPace::pipeline_limit() const {
  // Not measured yet: one queued task, until the first result tells how long tasks take.
  if (seconds_per_task_ <= 0) return 2;
  const double queued = std::chrono::duration<double>(kQueuedWork).count() / seconds_per_task_;
  return 1 + static_cast<std::size_t>(std::min<double>(queued, kPipelineDepth - 1));
}

void TaskPace::count_result(Clock::time_point now) {
  busy_in_window_ += now - front_since_;
  ++results_in_window_;
  if (seconds_per_task_ > 0 && results_in_window_ < kRateWindowTasks &&
      busy_in_window_ < kRateWindow)
    return;
  // Results of one batch arrive together: a first sample of 0 means fast tasks.
  seconds_per_task_ =
      std::max(std::chrono::duration<double>(busy_in_window_).count() / results_in_window_, 1e-9);
  busy_in_window_ = {};
  results_in_window_ = 0;
}

std::optional<std::uint64_t> Dispatcher::Worker::running_unreported() const {
  const auto id = process->running();
  if (id && std::any_of(queue.begin(), queue.end(),
                        [&](const wire::Assignment& a) { return a.task_id() == *id; }))
    return id;
  return std::nullopt;
}

Dispatcher::Dispatcher(DispatchOutbox& outbox, std::string server_id, std::string host,
                       unsigned capacity)
    : outbox_(outbox),
      server_id_(std::move(server_id)),
      host_(std::move(host)),
      capacity_(std::max(1u, capacity)) {}

Dispatcher::Worker* Dispatcher::find(const WorkerProcess& process) {
  for (auto& w : workers_)
    if (w->process.get() == &process) return w.get();
  return nullptr;
}

unsigned Dispatcher::busy() const {
  return static_cast<unsigned>(std::count_if(workers_.begin(), workers_.end(),
                                             [](const auto& w) { return !w->queue.empty(); }));
}

std::size_t Dispatcher::unfinished() const {
  std::size_t count = waiting_.size();
  for (const auto& w : workers_) count += w->queue.size();
  return count;
}

std::vector<std::uint64_t> Dispatcher::queue_of(const WorkerProcess& process) const {
  std::vector<std::uint64_t> ids;
  for (const auto& w : workers_)
    if (w->process.get() == &process)
      for (const auto& task : w->queue) ids.push_back(task.task_id());
  return ids;
}

void Dispatcher::add(wire::Assignment&& task, Clock::time_point now) {
  if (task.image_sha256().size() != 32) {
    fail_task(task.task_id(), FailureKind::kProtocol, "assignment without an image digest");
    return;
  }
  auto& per_image = counters_.images[task.image_sha256()];
  if (per_image.program.empty()) per_image.program = task.image_name();
  waiting_.push_back(std::move(task));
  dispatch(now);
}

void Dispatcher::image_ready(const std::string& image_sha256, Clock::time_point now) {
  if (ready_images_.insert(image_sha256).second) dispatch(now);
}

void Dispatcher::image_failed(const std::string& image_sha256, const std::string& reason) {
  for (auto task = waiting_.begin(); task != waiting_.end();) {
    if (task->image_sha256() == image_sha256) {
      fail_task(task->task_id(), FailureKind::kUnavailable,
                "server " + server_id_ + " could not get the program image: " + reason);
      task = waiting_.erase(task);
    } else {
      ++task;
    }
  }
}

void Dispatcher::environment_changed(Clock::time_point now) {
  ++environment_generation_;
  for (auto& w : workers_)
    if (w->queue.empty() && w->usable()) retire(*w);
  dispatch(now);
}

void Dispatcher::dispatch(Clock::time_point now) {
  if (stopped_) return;
  // Nothing can move while every slot holds a worker with a full pipeline (none is idle, so
  // none gives way either). Checked per task: the scheduler may keep a few hundred tasks
  // waiting here, and dispatch runs for every batch of results.
  auto room = [this] {
    if (workers_.size() < capacity_) return true;
    return std::any_of(workers_.begin(), workers_.end(), [](const auto& w) {
      return w->usable() && w->queue.size() < w->pace.pipeline_limit();
    });
  };
  for (auto task = waiting_.begin(); task != waiting_.end() && room();) {
    const std::string& image = task->image_sha256();
    if (!ready_images_.contains(image)) {
      ++task;
      continue;
    }
    const std::string& library_set = task->library_set();
    if (auto error = start_errors_.find({image, library_set}); error != start_errors_.end()) {
      if (now - error->second.at < kStartRetryAfter) {
        fail_task(task->task_id(), FailureKind::kCrash, error->second.message, 127);
        task = waiting_.erase(task);
        continue;
      }
      start_errors_.erase(error);
    }
    // The least loaded worker of this program; a new worker rather than queueing behind a busy
    // one while slots are free.
    Worker* chosen = nullptr;
    for (auto& w : workers_)
      if (w->usable() && w->image == image && w->library_set == library_set &&
          w->queue.size() < w->pace.pipeline_limit() &&
          w->environment_generation == environment_generation_ &&
          (!chosen || w->queue.size() < chosen->queue.size()))
        chosen = w.get();
    if ((!chosen || !chosen->queue.empty()) && workers_.size() < capacity_) {
      if (auto process = outbox_.spawn(image, task->image_name(), library_set)) {
        auto fresh = std::make_unique<Worker>();
        fresh->process = std::move(process);
        fresh->image = image;
        fresh->library_set = library_set;
        fresh->environment_generation = environment_generation_;
        chosen = fresh.get();
        workers_.push_back(std::move(fresh));
        ++counters_.workers_started;
        if (replacements_owed_ > 0) {
          --replacements_owed_;
          ++counters_.workers_restarted;
        }
      }
    }
    if (!chosen && workers_.size() >= capacity_) {
      // Make room: an idle worker of another program gives way (dispatch runs again once it is
      // gone).
      for (auto& w : workers_)
        if (w->queue.empty() && w->usable() &&
            (w->image != image || w->library_set != library_set ||
             w->environment_generation != environment_generation_)) {
          retire(*w);
          break;
        }
    }
    if (!chosen) {
      ++task;
      continue;
    }
    start_task(*chosen, std::move(*task), now);
    task = waiting_.erase(task);
  }
}

void Dispatcher::start_task(Worker& worker, wire::Assignment&& task, Clock::time_point now) {
  worker.process->send(task);
  worker.queue.push_back(std::move(task));
  if (worker.queue.size() == 1) front_started(worker, now);
}

void Dispatcher::front_started(Worker& worker, Clock::time_point now) {
  // The worker runs its tasks in order, so the front one starts when the previous one ends.
  worker.pace.front_started(now);
  outbox_.front_changed(*worker.process, &worker.queue.front());
}

void Dispatcher::worker_message(WorkerProcess& process, wire::Envelope& message,
                                Clock::time_point now) {
  Worker* worker = find(process);
  if (!worker) return;
  if (!message.has_task_done() || worker->queue.empty() ||
      message.task_done().task_id() != worker->queue.front().task_id()) {
    log()->warn("worker {} sent an unexpected message; stopping it", process.pid());
    retire(*worker);
    return;
  }
  worker->pace.count_result(now);
  const std::uint64_t id = worker->queue.front().task_id();
  ++counters_.images[worker->image].tasks_run;
  worker->queue.pop_front();
  if (!worker->abandoned && cancelled_.erase(id) == 0) {
    wire::TaskResult result;
    result.set_task_id(id);
    result.set_server_id(server_id_);
    result.set_outcome(std::move(*message.mutable_task_done()->mutable_outcome()));
    outbox_.report(std::move(result));
  }
  if (!worker->queue.empty())
    front_started(*worker, now);
  else
    outbox_.front_changed(process, nullptr);
  dispatch(now);
}

void Dispatcher::worker_closing(WorkerProcess& process) {
  if (Worker* worker = find(process)) worker->closing = true;
}

void Dispatcher::worker_exited(WorkerProcess& process, const WorkerExit& exit,
                               Clock::time_point now) {
  auto it = std::find_if(workers_.begin(), workers_.end(),
                         [&](const auto& w) { return w->process.get() == &process; });
  if (it == workers_.end()) return;
  std::unique_ptr<Worker> worker = std::move(*it);
  workers_.erase(it);
  if (!worker->abandoned && !worker->retired && !stopped_) {
    ++(worker->verdict ? counters_.workers_killed : counters_.workers_crashed);
    replacements_owed_ = std::min<std::uint64_t>(replacements_owed_ + 1, capacity_);
  }
  // Exit 127 before it attached to its progress page or reported anything: the dynamic loader
  // could not start the program here. Every try would fail the same way; fail its tasks now.
  if (!worker->abandoned && !worker->verdict && exit.known && !exit.signaled &&
      exit.exit_code == 127 && !exit.attached) {
    cannot_start(*worker, exit, now);
  } else {
    blame(*worker, exit);
  }
  dispatch(now);
}

void Dispatcher::blame(Worker& worker, const WorkerExit& exit) {
  // Which task ended with the worker: the one the server passed a verdict on (timeout,
  // cancel), else the one the progress page says was running, else (a worker without a page)
  // the first unreported one. Only that task fails; the others, never started or finished
  // with their results lost in the worker's batch, are rerun.
  auto& queue = worker.queue;
  auto culprit = queue.end();
  if (!worker.abandoned && !queue.empty()) {
    auto find_task = [&](std::uint64_t id) {
      return std::find_if(queue.begin(), queue.end(),
                          [id](const wire::Assignment& a) { return a.task_id() == id; });
    };
    if (worker.verdict) {
      culprit = find_task(worker.verdict_task);  // end(): it reported already, nobody is to blame
    } else if (auto running = worker.process->running();
               running && find_task(*running) != queue.end()) {
      culprit = find_task(*running);
    } else {
      culprit = queue.begin();
    }
  }
  if (culprit != queue.end() && cancelled_.erase(culprit->task_id()) == 0) {
    wire::TaskResult result;
    result.set_task_id(culprit->task_id());
    result.set_server_id(server_id_);
    auto* failure = result.mutable_failure();
    if (worker.verdict) {
      *failure = *worker.verdict;
    } else {
      failure->set_kind(static_cast<std::uint32_t>(FailureKind::kCrash));
      if (exit.known && exit.signaled) {
        failure->set_signal(exit.signal);
        failure->set_message("worker killed by signal " + std::to_string(exit.signal) + " (" +
                             signal_name(exit.signal) + ")");
      } else if (exit.known) {
        failure->set_exit_code(exit.exit_code);
        failure->set_message("worker exited with code " + std::to_string(exit.exit_code) +
                             " while running the task");
      } else {
        failure->set_message("worker vanished while running the task");
      }
    }
    failure->set_server(server_id_);
    log()->warn("task {} failed on worker {}: {}", result.task_id(), worker.process->pid(),
                failure->message());
    outbox_.report(std::move(result));
  }
  if (culprit != queue.end()) {
    ++counters_.images[worker.image].tasks_crashed;
    queue.erase(culprit);
  }
  // The other tasks: run them elsewhere, in their order, ahead of what waits.
  if (!worker.abandoned) {
    for (auto task = queue.rbegin(); task != queue.rend(); ++task)
      if (cancelled_.erase(task->task_id()) == 0) waiting_.push_front(std::move(*task));
  }
  queue.clear();
}

void Dispatcher::cannot_start(Worker& worker, const WorkerExit& exit, Clock::time_point now) {
  std::string why = exit.early_stderr;
  while (!why.empty() && (why.back() == '\n' || why.back() == '\r')) why.pop_back();
  if (why.empty()) why = "the worker exited with code 127 before it started";
  StartError& error = start_errors_[{worker.image, worker.library_set}];
  error.message =
      "cannot start the program on server " + server_id_ + " (host " + host_ + "): " + why;
  error.at = now;
  log()->error("{}", error.message);
  for (auto& task : worker.queue)
    if (cancelled_.erase(task.task_id()) == 0)
      fail_task(task.task_id(), FailureKind::kCrash, error.message, 127);
  worker.queue.clear();
  // Waiting tasks of this program fail in dispatch(), which sees the start error.
}

Dispatcher::Deadline Dispatcher::deadline_passed(WorkerProcess& process, std::uint64_t task_id) {
  Worker* worker = find(process);
  if (!worker || worker->queue.empty() || worker->queue.front().task_id() != task_id)
    return Deadline::kStale;
  if (auto running = worker->running_unreported(); running && *running != task_id)
    return Deadline::kLookAgain;  // done, its result held or on the way in the worker's batch
  wire::TaskFailure verdict;
  verdict.set_kind(static_cast<std::uint32_t>(FailureKind::kTimeout));
  verdict.set_message("the task ran longer than its timeout of " +
                      std::to_string(worker->queue.front().timeout_ms()) +
                      " ms; its worker was killed");
  verdict.set_signal(SIGKILL);
  worker->verdict = verdict;
  worker->verdict_task = task_id;
  process.kill();
  return Deadline::kKilled;
}

void Dispatcher::cancel(std::uint64_t task_id) {
  for (auto task = waiting_.begin(); task != waiting_.end(); ++task) {
    if (task->task_id() != task_id) continue;
    waiting_.erase(task);
    fail_task(task_id, FailureKind::kCancelled, "cancelled before it ran");
    return;
  }
  for (auto& w : workers_) {
    for (std::size_t i = 0; i < w->queue.size(); ++i) {
      if (w->queue[i].task_id() != task_id) continue;
      const auto running = w->running_unreported();
      if (running ? *running == task_id : i == 0) {
        wire::TaskFailure verdict;
        verdict.set_kind(static_cast<std::uint32_t>(FailureKind::kCancelled));
        verdict.set_message("cancelled while running; its worker was stopped");
        w->verdict = verdict;
        w->verdict_task = task_id;
        w->process->kill();
      } else {
        // Already in the worker's socket: it may still run, but its result is not reported.
        cancelled_.insert(task_id);
        fail_task(task_id, FailureKind::kCancelled, "cancelled before it ran");
      }
      return;
    }
  }
}

std::vector<std::uint64_t> Dispatcher::hand_back_unstarted() {
  // Tasks already sent to a worker stay: it may be starting one this instant, and a task must
  // not run here and elsewhere. That is at most about kQueuedWork of work behind each running
  // task (one task when tasks are long).
  std::vector<std::uint64_t> ids;
  for (const auto& task : waiting_) ids.push_back(task.task_id());
  waiting_.clear();
  return ids;
}

void Dispatcher::fail_task(std::uint64_t task_id, FailureKind kind, const std::string& message,
                           int exit_code, int signal) {
  wire::TaskResult result;
  result.set_task_id(task_id);
  result.set_server_id(server_id_);
  auto* failure = result.mutable_failure();
  failure->set_kind(static_cast<std::uint32_t>(kind));
  failure->set_message(message);
  failure->set_server(server_id_);
  failure->set_exit_code(exit_code);
  failure->set_signal(signal);
  outbox_.report(std::move(result));
}

void Dispatcher::retire(Worker& worker) {
  if (worker.closing) return;
  worker.retired = true;
  worker.process->retire();
}

void Dispatcher::abandon_all() {
  waiting_.clear();
  for (auto& w : workers_) {
    if (w->queue.empty()) continue;
    w->abandoned = true;
    w->process->kill();
  }
  cancelled_.clear();
}

void Dispatcher::shutdown() {
  stopped_ = true;
  waiting_.clear();
  // Moved out first: a process stopped here may report its link closing.
  auto workers = std::move(workers_);
  workers_.clear();
  for (auto& w : workers) {
    w->abandoned = true;
    w->process->stop_now();
  }
}

}  // namespace clupy::worker
