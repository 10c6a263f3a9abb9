// Room for calls in a worker's call arena (worker/progress_page.hpp), kept as a ring: calls are
// released in the order they were placed, when their tasks are reported. Positions only; the
// bytes are the caller's. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>

namespace clupy::worker {

class CallRing {
 public:
  explicit CallRing(std::size_t size) : size_(size) {}

  // Room for a call of `size` bytes for `task_id`: its offset in the arena, or none when there
  // is no room now. No call wraps around the arena's end.
  std::optional<std::size_t> place(std::uint64_t task_id, std::size_t size) {
    if (size > size_) return std::nullopt;
    std::uint64_t start = head_;
    const std::size_t at = start % size_;
    if (at + size > size_) start += size_ - at;
    if (start + size - tail_ > size_) return std::nullopt;
    head_ = start + size;
    calls_.emplace_back(task_id, head_);
    return start % size_;
  }
  // `task_id` was reported: its call's room (if it had one, and it is the oldest) is free again.
  void release(std::uint64_t task_id) {
    if (calls_.empty() || calls_.front().first != task_id) return;
    tail_ = calls_.front().second;
    calls_.pop_front();
    // Empty: start again at the front, so a worker that holds few calls at a time keeps only
    // the arena's first pages resident.
    if (calls_.empty()) head_ = tail_ = 0;
  }

 private:
  std::size_t size_;
  std::uint64_t head_ = 0, tail_ = 0;                          // counted from the start
  std::deque<std::pair<std::uint64_t, std::uint64_t>> calls_;  // task, end of its call
};

}  // namespace clupy::worker
