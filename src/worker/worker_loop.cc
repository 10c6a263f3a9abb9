#include "worker/worker_loop.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
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
#include "worker/result_batcher.hpp"

namespace clupy::worker {
namespace {

using Clock = std::chrono::steady_clock;

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
