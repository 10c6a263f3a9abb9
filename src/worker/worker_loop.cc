#include "worker/worker_loop.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <thread>

#include "clupy.pb.h"
#include "clupy/detail/call.hpp"
#include "common/frame.hpp"
#include "common/malloc_tuning.hpp"
#include "worker/current_task.hpp"
#include "worker/progress_page.hpp"

namespace clupy::worker {
namespace {

using Clock = std::chrono::steady_clock;

// A held result leaves at the latest this long after it was produced, even while the next
// task runs for minutes.
constexpr auto kMaxResultDelay = std::chrono::milliseconds(1);
// Results held beyond this many bytes leave at once (one write, and bounded memory).
constexpr std::size_t kMaxHeldBytes = 64u << 10;
// The flusher thread keeps ticking this many periods after it last saw a task run with results
// held before it sleeps until woken, so a busy worker never pays a wake-up per batch.
constexpr int kFlusherLinger = 100;

bool write_all(int fd, const char* data, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// Writes `header` then `payload` with as few writev calls as the socket allows.
bool write_both(int fd, std::string_view header, std::string_view payload) {
  while (!header.empty() || !payload.empty()) {
    iovec parts[2] = {{const_cast<char*>(header.data()), header.size()},
                      {const_cast<char*>(payload.data()), payload.size()}};
    const ssize_t n = ::writev(fd, parts, 2);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    auto written = static_cast<std::size_t>(n);
    const std::size_t from_header = std::min(written, header.size());
    header.remove_prefix(from_header);
    payload.remove_prefix(written - from_header);
  }
  return true;
}

std::string run_one(std::string_view call_bytes) {
  detail::CallOutcome outcome;
  try {
    outcome = detail::execute_serialized_call(call_bytes);
  } catch (const std::exception& e) {
    outcome.ok = false;
    outcome.failure.kind = FailureKind::kProtocol;
    outcome.failure.message = std::string("the task's call could not be decoded: ") + e.what();
  }
  return detail::serialize_outcome(outcome);
}

// The page the server shares (worker/progress_page.hpp), or null when it gave none.
WorkerProgress* map_progress_page() {
  struct stat st {};
  if (::fstat(kWorkerProgressFd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<std::size_t>(st.st_size) != kWorkerProgressSize)
    return nullptr;
  void* page = ::mmap(nullptr, kWorkerProgressSize, PROT_READ | PROT_WRITE, MAP_SHARED,
                      kWorkerProgressFd, 0);
  ::close(kWorkerProgressFd);  // the mapping stays; the task's code never sees the fd
  if (page == MAP_FAILED) return nullptr;
  auto* progress = static_cast<WorkerProgress*>(page);
  if (progress->magic.load() != kWorkerProgressMagic) {
    ::munmap(page, kWorkerProgressSize);
    return nullptr;
  }
  return progress;
}

// The call arena the server shares (worker/progress_page.hpp), read-only; empty when it gave
// none.
std::string_view map_call_arena(const WorkerProgress* progress) {
  if (!progress) return {};
  const std::uint64_t size = progress->call_arena_size.load(std::memory_order_acquire);
  if (size == 0) return {};  // no arena, so no fd 5 from the server either
  struct stat st {};
  void* arena = MAP_FAILED;
  if (::fstat(kWorkerArenaFd, &st) == 0 && S_ISREG(st.st_mode) &&
      static_cast<std::uint64_t>(st.st_size) == size)
    arena = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, kWorkerArenaFd, 0);
  ::close(kWorkerArenaFd);  // as for the page: the task's code never sees the fd
  if (arena == MAP_FAILED) return {};
  return {static_cast<const char*>(arena), static_cast<std::size_t>(size)};
}

// The bytes of a call: in the message, or in the arena where the message says.
std::optional<std::string_view> call_of(const wire::RunTask& run, std::string_view arena) {
  if (run.arena_size() == 0) return std::string_view(run.call());
  if (run.arena_offset() > arena.size() || run.arena_size() > arena.size() - run.arena_offset())
    return std::nullopt;
  return arena.substr(run.arena_offset(), run.arena_size());
}

// Unread bytes in the pipe behind `fd` (the worker's stdout or stderr); 0 when not a pipe.
int unread_output(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 ? n : 0;
}

// TaskDone frames waiting to be written to the server. The main thread appends one per task
// and writes them all when it runs out of tasks to run; a flusher thread writes any result
// held longer than kMaxResultDelay, so a long task never holds back the results before it.
// The flusher matters only while a task runs with results held: a worker answering one task at
// a time (a sequential client) never wakes it.
class ResultBatcher {
 public:
  // `attachments`: the server reads frame attachments, so a large outcome is written from where
  // it lies instead of being serialized into the batch.
  ResultBatcher(int fd, bool batching, bool attachments)
      : fd_(fd), batching_(batching), attachments_(attachments) {
    if (!batching_) return;
    flusher_ = std::thread([this] {
      // Signals are for the task's thread, never this one.
      sigset_t all;
      sigfillset(&all);
      pthread_sigmask(SIG_BLOCK, &all, nullptr);
      flush_loop();
    });
    flusher_.detach();  // the process ends with std::_Exit, never joining
  }

  // Returns false when the server is gone. May move the outcome out of `done`.
  bool add(wire::Envelope& done) {
    std::unique_lock lock(mu_);
    std::string& outcome = *done.mutable_task_done()->mutable_outcome();
    if (attachments_ && outcome.size() >= common::kAttachmentThreshold &&
        outcome.size() <= UINT32_MAX) {
      // Results held so far leave first, in order; then this one's frame and its outcome in
      // one writev.
      std::string payload = std::move(outcome);
      outcome.clear();
      common::append_attached_frame(done, payload.size(), held_, std::string::npos);
      if (ok_) ok_ = write_both(fd_, held_, payload);
      held_.clear();
      return ok_;
    }
    const bool was_empty = held_.empty();
    common::append_frame(done, held_, std::string::npos);
    if (!batching_ || held_.size() >= kMaxHeldBytes) return write_held(lock);
    if (was_empty) oldest_ = Clock::now();
    return ok_;
  }

  // The main thread is about to run a task: results held now wait for it, or for the flusher.
  void before_task() {
    if (!batching_) return;
    std::lock_guard lock(mu_);
    if (held_.empty()) return;
    ran_with_results_held_ = true;
    if (flusher_asleep_) wake_.notify_one();
  }

  // Writes every held result now. Returns false when the server is gone.
  bool flush() {
    std::unique_lock lock(mu_);
    return write_held(lock);
  }

 private:
  bool write_held(std::unique_lock<std::mutex>&) {
    if (!held_.empty() && ok_) ok_ = write_all(fd_, held_.data(), held_.size());
    held_.clear();
    return ok_;
  }

  void flush_loop() {
    std::unique_lock lock(mu_);
    int idle_ticks = 0;
    while (true) {
      if (ran_with_results_held_) {
        ran_with_results_held_ = false;
        idle_ticks = 0;
      }
      if (held_.empty()) {
        if (++idle_ticks < kFlusherLinger) {
          wake_.wait_for(lock, kMaxResultDelay);
        } else {
          flusher_asleep_ = true;
          wake_.wait(lock, [this] { return ran_with_results_held_ && !held_.empty(); });
          flusher_asleep_ = false;
        }
        continue;
      }
      const auto due = oldest_ + kMaxResultDelay;
      if (Clock::now() >= due) {
        write_held(lock);
      } else {
        wake_.wait_until(lock, due);
      }
    }
  }

  const int fd_;
  const bool batching_;
  const bool attachments_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::string held_;
  Clock::time_point oldest_;
  bool flusher_asleep_ = false;
  bool ran_with_results_held_ = false;  // since the flusher last looked
  bool ok_ = true;
  std::thread flusher_;
};

}  // namespace

void run_worker_loop(int fd) {
  // Every call and result passes through this process's heap.
  common::tune_malloc_for_payloads();
  // Batching needs the progress page: without it a crash could not be pinned on its task.
  WorkerProgress* progress = map_progress_page();
  const std::string_view arena = map_call_arena(progress);
  bool attachments = false;
  if (progress) {
    // This worker reads attachments (and calls in its arena, when it has one); it sends
    // attachments when its server said it reads them too.
    progress->worker_features.store(kLinkAttachments | (arena.empty() ? 0u : kLinkCallArena),
                                    std::memory_order_release);
    attachments =
        (progress->server_features.load(std::memory_order_acquire) & kLinkAttachments) != 0;
  }
  ResultBatcher results(fd, progress != nullptr, attachments);
  common::FrameDecoder decoder;
  wire::Envelope message;
  wire::Envelope done;
  while (true) {
    auto status = decoder.next(message);
    if (status == common::FrameDecoder::Status::kNeedMore) {
      // Nothing more to run: everything held leaves before we block.
      if (!results.flush()) break;
      // Straight into the decoder's buffer (or the attachment's own string): no copy.
      const std::span<char> space = decoder.prepare(1u << 16);
      const ssize_t n = ::read(fd, space.data(), space.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the server is gone or done with us
      decoder.commit(static_cast<std::size_t>(n));
      continue;
    }
    if (status != common::FrameDecoder::Status::kFrame || !message.has_run_task()) {
      std::fprintf(stderr, "clupy worker: bad message from the server (%s); exiting\n",
                   status == common::FrameDecoder::Status::kFrame ? "not a RunTask"
                                                                  : decoder.error().c_str());
      break;
    }
    const std::uint64_t task_id = message.run_task().task_id();
    results.before_task();
    if (progress) progress->running_task.store(task_id, std::memory_order_release);
    done.mutable_task_done()->set_task_id(task_id);
    if (const auto call = call_of(message.run_task(), arena)) {
      set_current_task(task_id, message.run_task().master_fencing_token());
      done.mutable_task_done()->set_outcome(run_one(*call));
      clear_current_task();
    } else {
      detail::CallOutcome refused;
      refused.failure.kind = FailureKind::kProtocol;
      refused.failure.message = "the task's call lies outside this worker's call arena";
      done.mutable_task_done()->set_outcome(detail::serialize_outcome(refused));
    }
    // Output written by the task must reach the server before the result, so that it is
    // attributed to this task.
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    if (!results.add(done)) break;
    if (progress && (unread_output(1) > 0 || unread_output(2) > 0)) {
      // The server attributes what it reads from the pipes to the task named in the page. Let
      // it read this task's output before the page names the next task, and send the result
      // now so the output is not held back either.
      if (!results.flush()) break;
      const auto give_up = Clock::now() + std::chrono::seconds(5);
      while ((unread_output(1) > 0 || unread_output(2) > 0) && Clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    message.Clear();
  }
  results.flush();
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace clupy::worker
