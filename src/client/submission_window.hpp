// The client's submission window: a program may have at most `size` tasks outstanding
// (submitted, or held back by max_in_flight, and not resolved), the master's client_window. A
// submitter beyond it blocks until results free a slice of the window, so that it then submits
// a burst (one SubmitTasks) instead of a task or two per wake-up. Guarded by the mutex of its
// owner (Runtime::mu_): every call but wake_all() is made holding it.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <mutex>

namespace clupy::client {

class SubmissionWindow {
 public:
  // The master's window; at least 1.
  void set_size(std::size_t size) { size_ = std::max<std::size_t>(1, size); }
  std::size_t size() const { return size_; }
  std::size_t outstanding() const { return outstanding_; }
  bool has_room() const { return outstanding_ < size_; }
  // How far below the window the outstanding count must fall before a blocked submitter is
  // woken: 1/16 of a large window, none for a small one (a program may need every slot).
  std::size_t slack() const { return size_ >= 1024 ? size_ / 16 : 1; }

  // Blocks, releasing `lock` (the owner's mutex) while it waits, until there is room or
  // `give_up()` is true (disconnected, stopped). Must not be called on the thread that
  // resolves tasks: it alone can open the window.
  template <class GiveUp>
  void wait_for_room(std::unique_lock<std::mutex>& lock, GiveUp give_up) {
    ++waiters_;
    open_.wait(lock, [&] { return has_room() || give_up(); });
    --waiters_;
  }
  // Submitters blocked in wait_for_room now.
  std::size_t waiters() const { return waiters_; }

  void add() { ++outstanding_; }
  // One task of a batch of results resolved; settle() follows the batch.
  void resolve() { --outstanding_; }
  // After a batch of results: wakes blocked submitters once a slice (slack()) is free. Returns
  // whether it woke them.
  bool settle() {
    if (outstanding_ + slack() > size_) return false;
    open_.notify_all();
    return true;
  }
  // A task resolved on its own (a held one cancelled): wakes submitters at once.
  void resolve_now() {
    --outstanding_;
    open_.notify_all();
  }
  // Nothing is outstanding any more (the connection failed); wake_all() follows.
  void clear() { outstanding_ = 0; }
  // Wakes every blocked submitter to look at its give-up condition again (with or without the
  // owner's mutex held).
  void wake_all() { open_.notify_all(); }

 private:
  std::condition_variable open_;
  std::size_t size_ = 65536;
  std::size_t outstanding_ = 0;
  std::size_t waiters_ = 0;
};

}  // namespace clupy::client
