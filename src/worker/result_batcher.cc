#include "worker/result_batcher.hpp"

#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string_view>

#include "clupy.pb.h"
#include "common/frame.hpp"

namespace clupy::worker {
namespace {

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

}  // namespace

ResultBatcher::ResultBatcher(int fd, bool batching, bool attachments, const base::Clock& clock,
                             bool flusher)
    : fd_(fd), batching_(batching), attachments_(attachments), clock_(clock) {
  if (!batching_ || !flusher) return;
  std::thread([this] {
    // Signals are for the task's thread, never this one.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    flush_loop();
  }).detach();
}

bool ResultBatcher::add(wire::Envelope& done) {
  std::unique_lock lock(mu_);
  std::string& outcome = *done.mutable_task_done()->mutable_outcome();
  if (attachments_ && outcome.size() >= common::kAttachmentThreshold &&
      outcome.size() <= UINT32_MAX) {
    // Results held so far leave first, in order; then this one's frame and its outcome in one
    // writev.
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
  if (was_empty) oldest_ = clock_.now();
  return ok_;
}

void ResultBatcher::before_task() {
  if (!batching_) return;
  std::lock_guard lock(mu_);
  if (held_.empty()) return;
  ran_with_results_held_ = true;
  if (flusher_asleep_) wake_.notify_one();
}

bool ResultBatcher::flush() {
  std::unique_lock lock(mu_);
  return write_held(lock);
}

bool ResultBatcher::flush_if_due() {
  std::unique_lock lock(mu_);
  if (held_.empty() || clock_.now() < oldest_ + kMaxResultDelay) return ok_;
  return write_held(lock);
}

bool ResultBatcher::write_held(std::unique_lock<std::mutex>&) {
  if (!held_.empty() && ok_) ok_ = write_all(fd_, held_.data(), held_.size());
  held_.clear();
  return ok_;
}

void ResultBatcher::flush_loop() {
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
    const auto now = clock_.now();
    const auto due = oldest_ + kMaxResultDelay;
    if (now >= due) {
      write_held(lock);
    } else {
      wake_.wait_for(lock, due - now);
    }
  }
}

}  // namespace clupy::worker
