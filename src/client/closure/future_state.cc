#include "clupy/detail/future_state.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <unordered_set>

namespace clupy::detail {

namespace {
thread_local bool defer_wakeups = false;
}  // namespace

FutureStateBase::DeferredWakeups::DeferredWakeups() : outer_(!defer_wakeups) {
  defer_wakeups = true;
}

FutureStateBase::DeferredWakeups::~DeferredWakeups() {
  if (outer_) defer_wakeups = false;
}

void FutureStateBase::wake_waiters() {
  std::lock_guard lock(mu_);
  if (!wake_deferred_) return;
  wake_deferred_ = false;
  for (const auto& [waiter, index] : waiters_) waiter->notify(index);
  waiters_.clear();
  cv_.notify_all();
}

FutureStateBase::~FutureStateBase() = default;

bool FutureStateBase::complete_with_failure(Failure failure) {
  std::unique_lock lock(mu_);
  if (status_ != Status::kPending) return false;
  failure_ = std::move(failure);
  status_ = Status::kFailed;
  finish(lock);
  return true;
}

bool FutureStateBase::fail_decode(std::string type_name, const std::string& error) {
  Failure failure;
  failure.kind = FailureKind::kProtocol;
  failure.type_name = std::move(type_name);
  failure.message = "the result does not decode as " + failure.type_name + ": " + error;
  return complete_with_failure(std::move(failure));
}

void FutureStateBase::set_cancel_hook(std::function<void()> hook) {
  std::lock_guard lock(mu_);
  if (status_ == Status::kPending) cancel_hook_ = std::move(hook);
}

bool FutureStateBase::cancel() {
  std::function<void()> hook;
  {
    std::unique_lock lock(mu_);
    if (status_ != Status::kPending) return false;
    hook = std::move(cancel_hook_);
    failure_ = Failure{};
    failure_.kind = FailureKind::kCancelled;
    failure_.message = "cancelled by the client";
    status_ = Status::kFailed;
    finish(lock);
  }
  // After resolving, so that a hook that completes the state itself changes nothing.
  if (hook) hook();
  return true;
}

FutureStateBase::Status FutureStateBase::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

bool FutureStateBase::wait_until(std::chrono::steady_clock::time_point deadline,
                                 WaitSpin spin) const {
  // A task's result usually comes back within a round trip (~100 us). Waiting that long awake,
  // yielding the core to anything runnable, saves the futex sleep and the wake-up of an idle
  // core, which on a VM costs tens of microseconds.
  constexpr auto kSpin = std::chrono::microseconds(150);
  const auto spin_until = spin == WaitSpin::kYes
                              ? std::min(deadline, std::chrono::steady_clock::now() + kSpin)
                              : std::chrono::steady_clock::time_point::min();
  while (!settled_flag_.load(std::memory_order_acquire) &&
         std::chrono::steady_clock::now() < spin_until)
    std::this_thread::yield();
  std::unique_lock lock(mu_);
  if (status_ != Status::kPending && settling_thread_ == std::this_thread::get_id()) return true;
  auto done = [this] { return settled_; };
  if (deadline == std::chrono::steady_clock::time_point::max()) {
    cv_.wait(lock, done);
    return true;
  }
  return cv_.wait_until(lock, deadline, done);
}

const Failure& FutureStateBase::failure() const {
  std::lock_guard lock(mu_);
  return failure_;
}

void FutureStateBase::add_callback(std::function<void()> callback) {
  {
    std::lock_guard lock(mu_);
    if (status_ == Status::kPending) {
      callbacks_.push_back(std::move(callback));
      return;
    }
  }
  run_callback_guarded(callback);
}

bool FutureStateBase::add_waiter(Waiter* waiter, std::size_t index) {
  std::lock_guard lock(mu_);
  if (settled_) return false;
  waiters_.emplace_back(waiter, index);
  return true;
}

void FutureStateBase::drop_handle() {
  if (handles_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  std::function<void()> hook;
  {
    std::lock_guard lock(mu_);
    if (status_ != Status::kPending)
      hook = dropped_hook_;
    else if (callbacks_.empty() && waiters_.empty())
      hook = unobserved_hook_;
  }
  if (hook) hook();
}

bool FutureStateBase::observed() const {
  if (handles_.load(std::memory_order_acquire) > 0) return true;
  std::lock_guard lock(mu_);
  return !callbacks_.empty() || !waiters_.empty();
}

void FutureStateBase::set_dropped_hook(std::function<void()> hook) {
  std::lock_guard lock(mu_);
  dropped_hook_ = std::move(hook);
}

void FutureStateBase::set_unobserved_hook(std::function<void()> hook) {
  std::lock_guard lock(mu_);
  unobserved_hook_ = std::move(hook);
}

const std::string& FutureStateBase::label() const {
  static const std::string kNone;
  return label_ != nullptr ? *label_ : kNone;
}

const std::string* intern_label(std::string_view name) {
  static std::mutex mu;
  static std::unordered_set<std::string>* names = new std::unordered_set<std::string>();
  std::lock_guard lock(mu);
  return &*names->emplace(name).first;
}

void FutureStateBase::remove_waiter(Waiter* waiter) {
  std::lock_guard lock(mu_);
  std::erase_if(waiters_, [waiter](const auto& entry) { return entry.first == waiter; });
}

void FutureStateBase::finish(std::unique_lock<std::mutex>& lock) {
  cancel_hook_ = nullptr;
  std::vector<std::function<void()>> callbacks = std::move(callbacks_);
  callbacks_.clear();
  if (!callbacks.empty()) {
    settling_thread_ = std::this_thread::get_id();
    lock.unlock();
    // States a callback completes (then() chains) are not in the runtime's batch: they wake
    // their waiters at once.
    const bool deferring = defer_wakeups;
    defer_wakeups = false;
    for (const auto& callback : callbacks) run_callback_guarded(callback);
    defer_wakeups = deferring;
    lock.lock();
  }
  settled_ = true;
  settled_flag_.store(true, std::memory_order_release);
  if (defer_wakeups) {
    // A thread that starts waiting from now on sees settled_ and does not block; one already
    // blocked is woken by wake_waiters() when the batch is done.
    wake_deferred_ = true;
    lock.unlock();
    return;
  }
  // Waiters are told under the lock: remove_waiter() takes it too, so a waiter that has been
  // removed is never touched again and may be destroyed.
  for (const auto& [waiter, index] : waiters_) waiter->notify(index);
  waiters_.clear();
  cv_.notify_all();
  lock.unlock();
}

void run_callback_guarded(const std::function<void()>& callback) noexcept {
  try {
    callback();
  } catch (...) {
    const Failure failure = failure_from_exception(std::current_exception());
    std::fprintf(stderr, "clupy: a Future callback threw %s; ignored\n",
                 failure.to_string().c_str());
  }
}

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> text(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && text ? std::string(text.get()) : std::string(mangled);
}

namespace {

// The end (one past) of the template argument list opened at `open` ('<'), or npos.
std::size_t matching_close(const std::string& text, std::size_t open) {
  int depth = 0;
  for (std::size_t i = open; i < text.size(); ++i) {
    if (text[i] == '<') ++depth;
    if (text[i] == '>' && --depth == 0) return i + 1;
  }
  return std::string::npos;
}

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
}

}  // namespace

std::string readable_type_name(std::string name) {
  for (std::string_view abi : {"std::__cxx11::", "std::__1::"}) replace_all(name, abi, "std::");
  // Arguments that are the standard's defaults wherever they appear in a demangled name.
  for (std::string_view defaulted : {", std::char_traits<", ", std::allocator<", ", std::less<",
                                     ", std::hash<", ", std::equal_to<"}) {
    for (auto at = name.find(defaulted); at != std::string::npos; at = name.find(defaulted, at)) {
      const std::size_t end = matching_close(name, at + defaulted.size() - 1);
      if (end == std::string::npos) break;
      name.erase(at, end - at);
    }
  }
  replace_all(name, " >", ">");
  replace_all(name, "std::basic_string<char>", "std::string");
  return name;
}

Failure failure_from_exception(std::exception_ptr error) {
  Failure failure;
  failure.kind = FailureKind::kException;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    failure.type_name = demangle(typeid(e).name());
    failure.message = e.what();
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    failure.type_name = type != nullptr ? demangle(type->name()) : "(unknown type)";
  }
  return failure;
}

}  // namespace clupy::detail
