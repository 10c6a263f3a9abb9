// The ZooKeeper handle behind clupy::coord::Session, and the node operations every recipe uses.
// Every operation retries across connection loss (waiting for the reconnect) until the op
// deadline, except where a retry could apply a change twice; those say so.
#pragma once

#include <zookeeper/zookeeper.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "clupy/coord.hpp"

namespace clupy::coord {

using Clock = std::chrono::steady_clock;

// A one-shot server watch. `fired` turns true when ZooKeeper reports the node event; `on_fire`
// (optional) is then posted to the event thread.
struct Watch {
  std::atomic<bool> fired{false};
  std::function<void()> on_fire;
};

// The name of a ZooKeeper error code, e.g. "ZNONODE".
const char* zk_error_name(int rc);
[[noreturn]] void throw_zk(int rc, const std::string& what);

// "_c_" + 32 hex digits, random: marks nodes this process created, so a create whose reply was
// lost can be found again.
std::string new_guid();

// Sequence number of a sequential node name (its last 10 digits); -1 when it has none.
std::int64_t sequence_of(const std::string& name);

// The Session's event thread: runs posted tasks one at a time, in order. Shared with the thread
// itself, so a Session destroyed from one of its own callbacks leaves nothing dangling.
struct EventQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> tasks;
  bool stop = false;
  std::uint64_t posted = 0;
  std::uint64_t done = 0;
  std::thread::id thread_id;
};

class SessionImpl : public std::enable_shared_from_this<SessionImpl> {
 public:
  explicit SessionImpl(SessionOptions options);
  ~SessionImpl();

  // Connects and waits for the session (throws CoordError). Call once, right after construction.
  void connect();
  void close();

  SessionState state() const;
  std::int64_t session_id() const;
  std::string session_password() const;
  std::chrono::milliseconds negotiated_timeout() const;
  // Bumped whenever the session is suspended or expires: a Lease acquired in an earlier epoch is
  // lost.
  std::uint64_t loss_epoch() const { return loss_epoch_.load(); }
  std::uint64_t watches_set() const { return watches_set_.load(); }

  std::uint64_t add_state_listener(std::function<void(SessionState)> listener);
  void remove_state_listener(std::uint64_t id);
  void post(std::function<void()> task);
  bool on_event_thread() const;
  // Waits until every task posted before this call has run (no-op on the event thread).
  void drain_events();

  bool wait_connected(Clock::time_point deadline);
  // Blocks until `done()` is true (true) or the deadline passes (false); woken by every watch and
  // state event. Throws kSessionExpired when the session ends first.
  bool wait_for(const std::function<bool()>& done, Clock::time_point deadline);

  // The deadline an operation gets to ride out a disconnection.
  Clock::time_point op_deadline() const;

  std::shared_ptr<Watch> new_watch(std::function<void()> on_fire = {});

  // Node operations. Return the ZooKeeper code for the outcomes listed; throw CoordError for any
  // other. `watch` may be null.
  // ZOK | ZNODEEXISTS | ZNONODE (parent missing).
  int create(const std::string& path, const std::string& data, int mode, Stat* stat = nullptr);
  // Creates `dir/<guid>-<kind>-<seq>` (sequential; ephemeral or persistent), recovering the node
  // when the reply to the create is lost. Creates `dir` when missing. Returns the node's name
  // (without `dir/`).
  std::string create_sequential(const std::string& dir, const std::string& kind,
                                const std::string& data, bool ephemeral, Stat* stat = nullptr);
  // Creates every missing node of `path` (persistent, empty).
  void ensure_path(const std::string& path);
  // ZOK | ZNONODE | ZBADVERSION | ZNOTEMPTY. A delete retried after a lost reply that then finds
  // no node reports ZOK with *in_doubt set (when given).
  int remove(const std::string& path, int version = -1, bool* in_doubt = nullptr);
  // Watches an existing node for its change or deletion: ZOK (watch armed) | ZNONODE (no watch
  // left behind; an exists() on a missing node would leave a creation watch on the server that a
  // sequential node's path never fires).
  int watch_existing(const std::string& path, const std::shared_ptr<Watch>& watch);
  // ZOK | ZNONODE. With a watch and ZNONODE, the watch waits for the node's creation.
  int exists(const std::string& path, Stat* stat, const std::shared_ptr<Watch>& watch);
  int get(const std::string& path, std::string* data, Stat* stat,
          const std::shared_ptr<Watch>& watch);
  // nullopt when the node does not exist.
  std::optional<std::vector<std::string>> children(const std::string& path,
                                                   const std::shared_ptr<Watch>& watch);
  // ZOK | ZNONODE | ZBADVERSION. Not retried: a lost reply throws kConnectionLoss.
  int set_once(const std::string& path, const std::string& data, int version, Stat* stat);
  // Unconditional set, retried (safe to apply twice).
  int set(const std::string& path, const std::string& data, Stat* stat);
  // zoo_multi, not retried (a lost reply throws kConnectionLoss). Returns the multi's code.
  int multi(std::vector<zoo_op_t>& ops);

  const ACL_vector* acl() const;

 private:
  static void global_watcher(zhandle_t* zh, int type, int state, const char* path, void* ctx);
  static void node_watcher(zhandle_t* zh, int type, int state, const char* path, void* ctx);
  void on_session_event(zhandle_t* zh, int state);
  void on_node_event(std::uintptr_t id);
  void set_state_locked(SessionState next);

  // Runs `op(zh)` while holding a use of the handle; retries on connection loss until the op
  // deadline when `retry` is set. Counts connection losses in *losses. Returns the last code.
  int call(const std::function<int(zhandle_t*)>& op, bool retry, int* losses = nullptr);
  // Registers `watch` (may be null) and runs op(watcher, ctx) through call().
  int call_watched(const std::shared_ptr<Watch>& watch,
                   const std::function<int(zhandle_t*, watcher_fn, void*)>& op,
                   bool watch_on_nonode);
  [[noreturn]] void throw_over() const;

  SessionOptions options_;
  std::string hosts_;
  std::string chroot_;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // every state change, fired watch and finished call
  zhandle_t* zh_ = nullptr;
  SessionState state_ = SessionState::kConnecting;
  bool auth_failed_ = false;
  bool closed_ = false;
  int in_flight_ = 0;
  clientid_t client_id_{};
  std::chrono::milliseconds negotiated_{0};
  std::uintptr_t next_watch_id_ = 1;
  std::unordered_map<std::uintptr_t, std::shared_ptr<Watch>> watches_;
  std::uint64_t next_listener_id_ = 1;
  std::map<std::uint64_t, std::shared_ptr<std::function<void(SessionState)>>> listeners_;

  std::atomic<std::uint64_t> loss_epoch_{0};
  std::atomic<std::uint64_t> watches_set_{0};

  std::shared_ptr<EventQueue> events_;
  std::thread event_thread_;
};

}  // namespace clupy::coord
