// The one seam for time, after leveldb's Env (its clock only): code whose behaviour depends on
// how much time passed (the master's scheduler, the server's dispatch of tasks to workers) reads
// it from a Clock it is given, so that tests drive a ManualClock instead of sleeping. Steady
// time only: wall-clock dates are read where they are shown.
#pragma once

#include <chrono>

namespace clupy::base {

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  virtual ~Clock() = default;
  virtual time_point now() const = 0;

  // The process's steady clock. Thread-safe.
  static const Clock& real();
};

// A clock that moves only when told: for tests. Not thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(time_point start = time_point() + std::chrono::hours(1)) : now_(start) {}
  time_point now() const override { return now_; }
  void advance(duration by) { now_ += by; }

 private:
  time_point now_;
};

namespace detail {
class SteadyClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
};
}  // namespace detail

inline const Clock& Clock::real() {
  static const detail::SteadyClock clock;
  return clock;
}

}  // namespace clupy::base
