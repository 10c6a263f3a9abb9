// The shared state behind clupy::Future<T>. The runtime keeps a std::shared_ptr<FutureStateBase>
// for every task in flight and completes it from its I/O thread; users see only Future<T>.
//
// Thread-safety: every member may be called from any thread. The first completion wins
// (result, failure or cancellation); later ones are ignored and return false. Callbacks run
// exactly once, outside the state's lock, on the completing thread, or on the registering
// thread when the state had already completed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

#include "clupy/errors.hpp"

namespace clupy::detail {

// Receives "future number `index` completed" from many states at once (wait_any,
// as_completed). notify() runs under the notifying state's lock: it must only record and wake.
class Waiter {
 public:
  virtual void notify(std::size_t index) = 0;

 protected:
  ~Waiter() = default;
};

enum class WaitSpin : bool { kNo, kYes };

class FutureStateBase {
 public:
  enum class Status { kPending, kSucceeded, kFailed };

  FutureStateBase() = default;
  virtual ~FutureStateBase();
  FutureStateBase(const FutureStateBase&) = delete;
  FutureStateBase& operator=(const FutureStateBase&) = delete;

  // --- The runtime's side ---

  // Decodes msgpack bytes into the value type and succeeds; bytes that do not decode fail the
  // state with a kProtocol failure instead. Returns false if the state was already complete.
  virtual bool complete_with_result(std::string_view msgpack_bytes) = 0;
  // Fails the state. Returns false if it was already complete.
  bool complete_with_failure(Failure failure);
  // Installs the function cancel() calls (e.g. "tell the master to drop task 17"). It runs at
  // most once, on the cancelling thread, after the state resolved as cancelled; it must not
  // block for long. Dropped if the state is already complete.
  void set_cancel_hook(std::function<void()> hook);

  // --- The user's side (through Future<T>) ---

  // Resolves as kCancelled and calls the cancel hook. Returns false if already complete.
  bool cancel();
  Status status() const;
  // Returns true once complete and the callbacks registered before completion have run (on the
  // completing thread, where it returns at once), false when `deadline` passed first.
  // time_point::max() waits without limit.
  // Spins (yielding) up to about a round trip before sleeping, unless told not to (waits for
  // many futures, see wait_all).
  bool wait_until(std::chrono::steady_clock::time_point deadline,
                  WaitSpin spin = WaitSpin::kYes) const;
  // Precondition: status() == kFailed.
  const Failure& failure() const;
  // Runs `callback` once on completion (now, on this thread, if already complete). An
  // exception escaping the callback is reported on stderr and dropped, so one bad callback
  // cannot stop the others or the runtime's I/O thread; use then() for fallible work.
  void add_callback(std::function<void()> callback);
  // Registers `waiter` to be told `index` on completion. Returns false (and does not register)
  // if already complete. The waiter must be removed before it is destroyed.
  bool add_waiter(Waiter* waiter, std::size_t index);
  void remove_waiter(Waiter* waiter);

  // What the future is for, as progress displays group futures: the task's function name, set
  // by the runtime before the future is handed out (interned: the pointer lives as long as the
  // process); "" for futures made otherwise. Set once, before other threads see the state.
  void set_label(const std::string* interned) { label_ = interned; }
  const std::string& label() const;

  // --- Handles: who can still read the value (futures passed as arguments) ---

  // Counted by Future<T>'s constructors and destructor.
  void add_handle() noexcept { handles_.fetch_add(1, std::memory_order_relaxed); }
  // When the last handle goes while the state is pending and nothing is registered on it (no
  // callback, no waiter), no one can ever read its value: the unobserved hook runs, on this
  // thread, outside the state's lock.
  void drop_handle();
  // True while a Future refers to the state or a callback or waiter is registered on it.
  bool observed() const;
  // The runtime's "its value is wanted by no one" (it stops the value's trip to this process).
  // Kept for the state's life; it may run more than once.
  void set_unobserved_hook(std::function<void()> hook);
  // Runs when the last handle of a completed state goes (on that thread, outside the lock):
  // the runtime then lets the server that holds the result free it. Set once completed or
  // about to be.
  void set_dropped_hook(std::function<void()> hook);
  // The runtime's id of the task behind the state, set once at submission; 0: none (a future
  // made in this process, or one not submitted yet).
  void set_task_id(std::uint64_t id) noexcept { task_id_.store(id, std::memory_order_release); }
  std::uint64_t task_id() const noexcept { return task_id_.load(std::memory_order_acquire); }

  // --- Batch completion (the runtime completing a TaskResults batch) ---

  // While a DeferredWakeups object lives on a thread, states completed on that thread settle
  // (values stored, callbacks run, settled) but do not wake their waiting threads; the
  // runtime calls wake_waiters() on each once the whole batch is settled. A thread waiting in
  // wait_all() then wakes once per batch, finding the following futures already settled,
  // instead of once per future (a futex wake and a context switch each).
  class DeferredWakeups {
   public:
    DeferredWakeups();
    ~DeferredWakeups();
    DeferredWakeups(const DeferredWakeups&) = delete;
    DeferredWakeups& operator=(const DeferredWakeups&) = delete;

   private:
    bool outer_;
  };
  // Wakes the threads waiting for this state, if it settled with its wake-up deferred.
  void wake_waiters();

 protected:
  // Runs `store` under the lock and marks success, if still pending.
  template <class Store>
  bool resolve_success(Store&& store) {
    std::unique_lock lock(mu_);
    if (status_ != Status::kPending) return false;
    std::forward<Store>(store)();
    status_ = Status::kSucceeded;
    finish(lock);
    return true;
  }
  // A kProtocol failure saying the result bytes did not decode as `type_name`.
  bool fail_decode(std::string type_name, const std::string& error);

 private:
  // Wakes waiters, unlocks, then runs the callbacks.
  void finish(std::unique_lock<std::mutex>& lock);

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  Status status_ = Status::kPending;
  // Set once the callbacks registered before completion have run: waiting (wait, wait_all,
  // wait_any) ends only then, so a caller that waited sees every callback's effects.
  bool settled_ = false;
  std::atomic<bool> settled_flag_{false};  // settled_, readable without the lock
  std::thread::id settling_thread_;        // runs those callbacks; never waits for itself
  Failure failure_;
  std::vector<std::function<void()>> callbacks_;
  std::vector<std::pair<Waiter*, std::size_t>> waiters_;
  std::function<void()> cancel_hook_;
  bool wake_deferred_ = false;  // settled under DeferredWakeups; wake_waiters() still to come
  const std::string* label_ = nullptr;
  std::atomic<std::int64_t> handles_{0};
  std::atomic<std::uint64_t> task_id_{0};
  std::function<void()> unobserved_hook_;  // guarded by mu_
  std::function<void()> dropped_hook_;     // guarded by mu_
};

// The one copy of `name` kept for the life of the process (labels of futures). Thread-safe.
const std::string* intern_label(std::string_view name);

// Runs `callback`, reporting (not propagating) an exception; see add_callback().
void run_callback_guarded(const std::function<void()>& callback) noexcept;

// The demangled name of T, for messages.
std::string demangle(const char* mangled);
template <class T>
std::string type_name() {
  return demangle(typeid(T).name());
}
// A demangled type name as a programmer writes it: std::string for the library's basic_string
// of char, no inline ABI namespace, and no template arguments that are the standard defaults
// (allocators, std::less, std::hash, std::equal_to, std::char_traits):
// "std::map<std::string, int>", not "std::map<std::__cxx11::basic_string<char, ...", ...
std::string readable_type_name(std::string demangled);
template <class T>
std::string readable_type_name() {
  return readable_type_name(type_name<T>());
}

// A Failure describing the exception in `error`: kException, its demangled dynamic type and
// what() (or an empty message for a type that is not a std::exception).
Failure failure_from_exception(std::exception_ptr error);

// The state of a Future<T>. `Decoder` turns msgpack bytes into a T; a state without one (made
// by then() or make_ready_future) fails complete_with_result() with kProtocol.
template <class T>
class FutureState final : public FutureStateBase {
 public:
  using Decoder = std::optional<T> (*)(std::string_view bytes, std::string& error);

  explicit FutureState(Decoder decoder = nullptr) : decoder_(decoder) {}

  bool complete_with_result(std::string_view msgpack_bytes) override {
    std::string error = "this future has no decoder";
    std::optional<T> decoded;
    if (decoder_ != nullptr) decoded = decoder_(msgpack_bytes, error);
    if (!decoded) return fail_decode(type_name<T>(), error);
    return resolve_success([&] { value_ = std::move(decoded); });
  }
  // Succeeds with a value produced in this process.
  bool complete_with_value(T value) {
    return resolve_success([&] { value_.emplace(std::move(value)); });
  }
  // Precondition: status() == kSucceeded. The value never changes after that.
  const T& value() const { return *value_; }

 private:
  Decoder decoder_;
  std::optional<T> value_;
};

template <>
class FutureState<void> final : public FutureStateBase {
 public:
  using Decoder = bool (*)(std::string_view bytes, std::string& error);

  explicit FutureState(Decoder decoder = nullptr) : decoder_(decoder) {}

  bool complete_with_result(std::string_view msgpack_bytes) override {
    std::string error = "this future has no decoder";
    if (decoder_ == nullptr || !decoder_(msgpack_bytes, error)) return fail_decode("void", error);
    return resolve_success([] {});
  }
  bool complete_with_value() {
    return resolve_success([] {});
  }

 private:
  Decoder decoder_;
};

}  // namespace clupy::detail
