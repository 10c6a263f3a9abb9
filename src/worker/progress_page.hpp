// The progress page a server shares with each of its worker processes: one page of shared
// memory (a memfd the worker inherits as fd kWorkerProgressFd) in which the worker records the
// id of the task it is running, before running it. Plain stores, no system call.
//
// Why: a worker sends its results in batches (one write per batch, not per task), so the
// server cannot tell from the results alone which task a dying worker was running. The page
// tells it exactly: that task fails (crash, or the server's verdict), every other unreported
// task is rerun elsewhere. The page also names the task that owns output read from the
// worker's stdout/stderr pipes (docs/performance.md, "Batches between server and worker").
//
// A worker without the page (or a server that provides none) falls back to one write per
// task, and the server to "the first unreported task is the running one", as before.
#pragma once

#include <atomic>
#include <cstdint>

namespace clupy::worker {

inline constexpr int kWorkerProgressFd = 4;
inline constexpr std::uint64_t kWorkerProgressMagic = 0x63'6c'75'70'79'70'72'67;  // "clupyprg"
inline constexpr std::size_t kWorkerProgressSize = 4096;

// Features of the link between server and worker, announced through the page by each side for
// the other (a worker may be built with an older or newer libclupy than its server; a page
// starts zeroed, so an older side announces nothing).
inline constexpr std::uint32_t kLinkAttachments = 1;  // reads frame attachments
inline constexpr std::uint32_t kLinkCallArena = 2;    // reads calls from the call arena

// The call arena: shared memory (a memfd the worker inherits as fd kWorkerArenaFd, of
// `call_arena_size` bytes) into which the server writes large calls, so they cross from server
// to worker with one copy instead of a socket write and read. The worker only reads it.
inline constexpr int kWorkerArenaFd = 5;

struct WorkerProgress {
  std::atomic<std::uint64_t> magic;            // kWorkerProgressMagic, written by the server
  std::atomic<std::uint64_t> running_task;     // the task the worker started last; 0: none yet
  std::atomic<std::uint32_t> server_features;  // kLink*, written by the server before the spawn
  std::atomic<std::uint32_t> worker_features;  // kLink*, written by the worker as it starts
  std::atomic<std::uint64_t> call_arena_size;  // written by the server; 0: no arena
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "the page is shared between processes");

}  // namespace clupy::worker
