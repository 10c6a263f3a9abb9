// The worker's side of results: TaskDone frames waiting to be written to the server. The loop
// appends one per task and writes them all when it runs out of tasks to run; results held
// longer than kMaxResultDelay are written by a flusher thread, so a long task never holds back
// the results before it. The flusher matters only while a task runs with results held: a worker
// answering one task at a time (a sequential client) never wakes it. Time is read from the
// Clock it is given; thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>

#include "base/clock.hpp"

namespace clupy::wire {
class Envelope;
}

namespace clupy::worker {

class ResultBatcher {
 public:
  // A held result leaves at the latest this long after it was produced, even while the next
  // task runs for minutes.
  static constexpr auto kMaxResultDelay = std::chrono::milliseconds(1);
  // Results held beyond this many bytes leave at once (one write, and bounded memory).
  static constexpr std::size_t kMaxHeldBytes = 64u << 10;

  // Writes to `fd` (the server's socket). `batching`: hold results as above (a worker whose
  // crash could not be pinned on its task writes each at once). `attachments`: the server reads
  // frame attachments, so a large outcome is written from where it lies instead of being
  // serialized into the batch. `flusher`: start the flusher thread (tests drive flush_if_due
  // themselves; a `clock` that is not thread-safe needs false). The thread is detached: the
  // worker process ends with std::_Exit, never destroying this object.
  ResultBatcher(int fd, bool batching, bool attachments,
                const base::Clock& clock = base::Clock::real(), bool flusher = true);
  ResultBatcher(const ResultBatcher&) = delete;
  ResultBatcher& operator=(const ResultBatcher&) = delete;

  // Returns false when the server is gone. May move the outcome out of `done`.
  bool add(wire::Envelope& done);
  // The loop is about to run a task: results held now wait for it, or for the flusher.
  void before_task();
  // Writes every held result now. Returns false when the server is gone.
  bool flush();
  // Writes the held results when the oldest has waited kMaxResultDelay (what the flusher
  // does). Returns false when the server is gone.
  bool flush_if_due();

 private:
  bool write_held(std::unique_lock<std::mutex>&);
  void flush_loop();

  const int fd_;
  const bool batching_;
  const bool attachments_;
  const base::Clock& clock_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::string held_;
  base::Clock::time_point oldest_;
  bool flusher_asleep_ = false;
  bool ran_with_results_held_ = false;  // since the flusher last looked
  bool ok_ = true;
};

}  // namespace clupy::worker
