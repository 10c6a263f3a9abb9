// clupy::Future<T>: the result of a task that runs elsewhere, and the free functions that wait
// for many of them (wait_all, wait_any, as_completed).
//
// A Future is a cheap, copyable handle to shared state (like std::shared_future): copies see
// the same completion. Results arrive on the runtime's I/O thread while users wait on theirs;
// every member is safe to call from any thread. A default-constructed Future is "invalid":
// every member except valid() throws FutureStateError.
//
//   auto f = clupy::parallel(primes)(100);
//   f.succeed([](const std::vector<int>& v) { print(v); })
//    .fail([](const clupy::Failure& e) { print(e); });
//   if (f.wait(std::chrono::seconds(10)) && f.successful()) use(f.value());
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "clupy/detail/future_state.hpp"
#include "clupy/errors.hpp"

namespace clupy {

template <class T>
class Future;

namespace detail {

template <class T>
struct ValueRef {
  using type = const T&;
};
template <>
struct ValueRef<void> {
  using type = void;
};

// The deadline `timeout` from now; durations past ~100 years mean "no deadline" (adding them
// to now() would overflow).
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(std::chrono::duration<Rep, Period> timeout) {
  using namespace std::chrono;
  const auto now = steady_clock::now();
  if (timeout <= timeout.zero()) return now;
  if (duration<double>(timeout) > duration<double>(hours(24 * 365 * 100))) {
    return steady_clock::time_point::max();
  }
  return now + ceil<steady_clock::duration>(timeout);
}

// How the runtime (and then()) reaches a Future's state.
struct FutureAccess {
  template <class T>
  static Future<T> make(std::shared_ptr<FutureState<T>> state) {
    return Future<T>(std::move(state));
  }
  template <class T>
  static const std::shared_ptr<FutureState<T>>& state(const Future<T>& future) {
    return future.checked_state();
  }
};

}  // namespace detail

template <class T>
class Future {
 public:
  using value_type = T;

  // An invalid future (valid() is false); assign a real one to use it.
  Future() = default;
  // Copies share the state. The state counts its Futures: when the program holds none of a
  // pending task's futures (and registered no callback), the runtime need not bring its value
  // to this process (it may still feed tasks it was passed to).
  Future(const Future& other) : state_(other.state_) {
    if (state_) state_->add_handle();
  }
  Future(Future&& other) noexcept : state_(std::move(other.state_)) {}
  Future& operator=(const Future& other) {
    if (this != &other) Future(other).swap(*this);
    return *this;
  }
  Future& operator=(Future&& other) noexcept {
    if (this != &other) Future(std::move(other)).swap(*this);
    return *this;
  }
  ~Future() {
    if (state_) state_->drop_handle();
  }
  void swap(Future& other) noexcept { state_.swap(other.state_); }

  bool valid() const noexcept { return state_ != nullptr; }
  // True once the task succeeded, failed or was cancelled. Never blocks.
  bool completed() const { return status() != Status::kPending; }
  // True once the task succeeded. Never blocks.
  bool successful() const { return status() == Status::kSucceeded; }

  // The result. Never blocks: throws FutureStateError if not completed yet and RemoteError
  // (carrying failure()) if the task failed. The reference lives as long as any copy of this
  // Future.
  typename detail::ValueRef<T>::type value() const {
    const auto& s = checked_state();
    switch (s->status()) {
      case Status::kPending:
        throw FutureStateError("clupy::Future::value(): the task has not completed yet");
      case Status::kFailed:
        throw RemoteError(s->failure());
      case Status::kSucceeded:
        break;
    }
    if constexpr (!std::is_void_v<T>) return s->value();
  }

  // Why the task failed. Never blocks: throws FutureStateError if it has not completed or if it
  // succeeded.
  const Failure& failure() const {
    const auto& s = checked_state();
    const Status st = s->status();
    if (st == Status::kPending) {
      throw FutureStateError("clupy::Future::failure(): the task has not completed yet");
    }
    if (st == Status::kSucceeded) {
      throw FutureStateError("clupy::Future::failure(): the task succeeded; it has no failure");
    }
    return s->failure();
  }

  // Blocks until completion or until `timeout` passes; true if completed.
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) const {
    return checked_state()->wait_until(detail::deadline_after(timeout));
  }
  bool wait_until(std::chrono::steady_clock::time_point deadline) const {
    return checked_state()->wait_until(deadline);
  }
  // Blocks until completion, without limit.
  void wait() const { checked_state()->wait_until(std::chrono::steady_clock::time_point::max()); }

  // Blocks until completion, then returns value() (or throws its RemoteError).
  typename detail::ValueRef<T>::type get() const {
    wait();
    return value();
  }

  // Calls cb(value) (cb() for Future<void>) once, if and when the task succeeds: now, on this
  // thread, if it already has; otherwise on the thread that completes it. Returns *this.
  // Exceptions escaping cb are reported on stderr and dropped (use then() to keep them).
  template <class Callback>
  const Future& succeed(Callback&& cb) const {
    detail::FutureState<T>* s = checked_state().get();
    s->add_callback([s, fn = std::decay_t<Callback>(std::forward<Callback>(cb))]() mutable {
      if (s->status() != Status::kSucceeded) return;
      if constexpr (std::is_void_v<T>) {
        fn();
      } else {
        fn(s->value());
      }
    });
    return *this;
  }
  template <class Callback>
  Future& succeed(Callback&& cb) {
    std::as_const(*this).succeed(std::forward<Callback>(cb));
    return *this;
  }

  // Calls cb(const Failure&) once, if and when the task fails or is cancelled; same threading
  // and exception rules as succeed(). Returns *this.
  template <class Callback>
  const Future& fail(Callback&& cb) const {
    detail::FutureState<T>* s = checked_state().get();
    s->add_callback([s, fn = std::decay_t<Callback>(std::forward<Callback>(cb))]() mutable {
      if (s->status() == Status::kFailed) fn(s->failure());
    });
    return *this;
  }
  template <class Callback>
  Future& fail(Callback&& cb) {
    std::as_const(*this).fail(std::forward<Callback>(cb));
    return *this;
  }

  // A future of f(value()) (f() for Future<void>), computed in this process on the thread that
  // completes this one. If this fails, the new future fails with the same Failure; if f
  // throws, it fails with kException and the exception's type and message. Cancelling the
  // new future does not cancel this one.
  template <class F>
  auto then(F&& f) const {
    using Fn = std::decay_t<F>;
    using Raw = std::conditional_t<std::is_void_v<T>, std::invoke_result<Fn&>,
                                   std::invoke_result<Fn&, value_ref_or_void>>;
    using U = std::decay_t<typename Raw::type>;
    auto next = std::make_shared<detail::FutureState<U>>();
    detail::FutureState<T>* s = checked_state().get();
    s->add_callback([s, next, fn = Fn(std::forward<F>(f))]() mutable {
      if (s->status() == Status::kFailed) {
        next->complete_with_failure(s->failure());
        return;
      }
      try {
        if constexpr (std::is_void_v<U>) {
          if constexpr (std::is_void_v<T>) {
            fn();
          } else {
            fn(s->value());
          }
          next->complete_with_value();
        } else if constexpr (std::is_void_v<T>) {
          next->complete_with_value(fn());
        } else {
          next->complete_with_value(fn(s->value()));
        }
      } catch (...) {
        next->complete_with_failure(detail::failure_from_exception(std::current_exception()));
      }
    });
    return detail::FutureAccess::make<U>(std::move(next));
  }

  // Asks the runtime to stop the task and resolves this future as kCancelled (fail callbacks
  // run). Returns false, changing nothing, if it had already completed. A result that arrives
  // later is ignored. The task may still have run (or be running) on a worker.
  bool cancel() const { return checked_state()->cancel(); }

 private:
  friend struct detail::FutureAccess;
  using Status = detail::FutureStateBase::Status;
  using value_ref_or_void =
      std::conditional_t<std::is_void_v<T>, void, typename detail::ValueRef<T>::type>;

  explicit Future(std::shared_ptr<detail::FutureState<T>> state) : state_(std::move(state)) {
    if (state_) state_->add_handle();
  }

  const std::shared_ptr<detail::FutureState<T>>& checked_state() const {
    if (!state_)
      throw FutureStateError("clupy::Future: this future is empty (default-constructed)");
    return state_;
  }
  Status status() const { return checked_state()->status(); }

  std::shared_ptr<detail::FutureState<T>> state_;
};

// A future that has already succeeded with `value`.
template <class T>
Future<std::decay_t<T>> make_ready_future(T&& value) {
  auto state = std::make_shared<detail::FutureState<std::decay_t<T>>>();
  state->complete_with_value(std::forward<T>(value));
  return detail::FutureAccess::make(std::move(state));
}
inline Future<void> make_ready_future() {
  auto state = std::make_shared<detail::FutureState<void>>();
  state->complete_with_value();
  return detail::FutureAccess::make(std::move(state));
}
// A future that has already failed with `failure`.
template <class T>
Future<T> make_failed_future(Failure failure) {
  auto state = std::make_shared<detail::FutureState<T>>();
  state->complete_with_failure(std::move(failure));
  return detail::FutureAccess::make(std::move(state));
}

// Blocks until every future in `futures` (any range of Future<T>) has completed, or until
// `timeout` passes. True if all completed. Completion includes failure and cancellation.
template <class Range, class Rep, class Period>
bool wait_all(const Range& futures, std::chrono::duration<Rep, Period> timeout) {
  const auto deadline = detail::deadline_after(timeout);
  for (const auto& f : futures) {
    // Without the spin of a single wait: a thread waiting for many results would spin each
    // time it caught up with them, taking a core from the tasks' own processes.
    if (!detail::FutureAccess::state(f)->wait_until(deadline, detail::WaitSpin::kNo)) return false;
  }
  return true;
}

namespace detail {

// Records the first index it is told about.
class FirstCompleted final : public Waiter {
 public:
  void notify(std::size_t index) override {
    std::lock_guard lock(mu_);
    if (!index_) index_ = index;
    cv_.notify_all();
  }
  std::optional<std::size_t> wait_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mu_);
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      cv_.wait(lock, [&] { return index_.has_value(); });
    } else {
      cv_.wait_until(lock, deadline, [&] { return index_.has_value(); });
    }
    return index_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::size_t> index_;
};

// Queues indices in completion order.
class CompletionQueue final : public Waiter {
 public:
  void notify(std::size_t index) override {
    std::lock_guard lock(mu_);
    ready_.push_back(index);
    cv_.notify_all();
  }
  std::optional<std::size_t> pop_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mu_);
    auto ready = [&] { return !ready_.empty(); };
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      cv_.wait(lock, ready);
    } else if (!cv_.wait_until(lock, deadline, ready)) {
      return std::nullopt;
    }
    const std::size_t index = ready_.front();
    ready_.pop_front();
    return index;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::size_t> ready_;
};

}  // namespace detail

// Blocks until at least one future in `futures` has completed, or `timeout` passes. Returns the
// position (0-based, in iteration order) of a completed one, the lowest if several already
// were; nullopt on timeout or for an empty range.
template <class Range, class Rep, class Period>
std::optional<std::size_t> wait_any(const Range& futures,
                                    std::chrono::duration<Rep, Period> timeout) {
  const auto deadline = detail::deadline_after(timeout);
  // Collect first: an invalid future must throw before any waiter is registered.
  std::vector<detail::FutureStateBase*> states;
  for (const auto& f : futures) states.push_back(detail::FutureAccess::state(f).get());
  detail::FirstCompleted first;
  std::vector<detail::FutureStateBase*> registered;
  std::optional<std::size_t> done;
  std::size_t index = 0;
  for (detail::FutureStateBase* s : states) {
    if (!s->add_waiter(&first, index)) {
      done = index;
      break;
    }
    registered.push_back(s);
    ++index;
  }
  if (!done && !registered.empty()) done = first.wait_until(deadline);
  for (detail::FutureStateBase* s : registered) s->remove_waiter(&first);
  return done;
}

// Yields futures in the order they complete:
//
//   for (auto& f : clupy::as_completed(results)) handle(f);        // each one, as it completes
//   auto done = clupy::as_completed(results, 10s);                  // with an overall deadline
//   while (auto i = done.next()) handle(results[*i]);               // positions instead
//
// Holds copies of the futures (cheap handles). Iteration ends when every future has been
// yielded or the deadline (if given) passed; without a deadline it blocks until all complete.
// Each future is yielded exactly once. Not thread-safe itself: iterate from one thread.
template <class T>
class AsCompleted {
 public:
  AsCompleted(std::vector<Future<T>> futures, std::chrono::steady_clock::time_point deadline)
      : futures_(std::move(futures)),
        queue_(std::make_unique<detail::CompletionQueue>()),
        deadline_(deadline) {
    for (const auto& f : futures_) detail::FutureAccess::state(f);  // throws if one is invalid
    for (std::size_t i = 0; i < futures_.size(); ++i) {
      detail::FutureStateBase* s = detail::FutureAccess::state(futures_[i]).get();
      if (!s->add_waiter(queue_.get(), i)) queue_->notify(i);
    }
  }
  ~AsCompleted() {
    if (!queue_) return;
    for (auto& f : futures_) detail::FutureAccess::state(f)->remove_waiter(queue_.get());
  }
  AsCompleted(AsCompleted&&) noexcept = default;
  AsCompleted& operator=(AsCompleted&&) = delete;

  // The position of the next future to complete; nullopt once all were yielded or the
  // deadline passed.
  std::optional<std::size_t> next() {
    if (yielded_ == futures_.size()) return std::nullopt;
    auto index = queue_->pop_until(deadline_);
    if (index) ++yielded_;
    return index;
  }

  class Iterator {
   public:
    using value_type = Future<T>;
    using difference_type = std::ptrdiff_t;
    Future<T>& operator*() const { return owner_->futures_[*current_]; }
    Iterator& operator++() {
      current_ = owner_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return !current_.has_value(); }

   private:
    friend class AsCompleted;
    explicit Iterator(AsCompleted* owner) : owner_(owner), current_(owner->next()) {}
    AsCompleted* owner_;
    std::optional<std::size_t> current_;
  };
  Iterator begin() { return Iterator(this); }
  std::default_sentinel_t end() const { return {}; }

 private:
  std::vector<Future<T>> futures_;
  std::unique_ptr<detail::CompletionQueue> queue_;
  std::chrono::steady_clock::time_point deadline_;
  std::size_t yielded_ = 0;
};

template <class T>
AsCompleted<T> as_completed(std::vector<Future<T>> futures) {
  return AsCompleted<T>(std::move(futures), std::chrono::steady_clock::time_point::max());
}
template <class T, class Rep, class Period>
AsCompleted<T> as_completed(std::vector<Future<T>> futures,
                            std::chrono::duration<Rep, Period> timeout) {
  return AsCompleted<T>(std::move(futures), detail::deadline_after(timeout));
}

}  // namespace clupy
