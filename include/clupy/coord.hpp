// Coordination primitives on ZooKeeper: locks, read/write locks, semaphores, barriers, leader
// election, counters, watched values and queues, done as ZooKeeper's recipes prescribe
// (sequential ephemeral nodes, each waiter watches only its predecessor, a GUID in node names so a
// create whose reply was lost is recovered, no polling). See docs/coordination.md.
//
// Threading: a Session and every primitive built on it may be used from any thread. Blocking
// calls (lock acquisition, barrier waits, queue pops) block only the calling thread. Callbacks
// (session state, lock loss, leadership, value changes) run on the Session's single event thread,
// one at a time, in order; they may call any blocking API of this header but must not destroy
// the Session they run on.
//
// Session loss is explicit: a Session goes kSuspended when its connection drops (the server may
// still hold its session, but this process can no longer tell) and kExpired when the server has
// ended it. Expiry is final for that Session object: every later operation and every blocked call
// throws CoordError with kind kSessionExpired; make a new Session to carry on. A Lease (a held
// lock, read/write lock or semaphore slot) is lost for good as soon as its session is suspended
// or expired: its loss callback fires and still_held() turns false; nothing in this library
// believes a lock is still held after its session was in doubt.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "clupy/errors.hpp"

namespace clupy {

// The error of every coordination call. kind() classifies it; zk_error() names the ZooKeeper
// error code it came from ("ZCONNECTIONLOSS", "ZSESSIONEXPIRED", ...; "" when it did not come
// from ZooKeeper, e.g. a bad argument).
class CoordError : public Error {
 public:
  enum class Kind {
    kSessionExpired,  // the session ended (server-side expiry, or this Session was closed)
    kConnectionLoss,  // no server reachable in time; for add/compare_and_set: outcome unknown
    kNoNode,          // a node the call needs does not exist
    kNodeExists,      // a node the call creates already exists
    kAuthFailed,      // digest authentication refused, or the ACL denies the call
    kBadArgument,     // a malformed path, connect string or option
    kCorrupt,         // a node's data could not be decoded
    kNotConfigured,   // cluster_session_options(): the cluster has no coordination service
    kOther,           // any other ZooKeeper error
  };
  CoordError(Kind kind, std::string zk_error, const std::string& what);
  Kind kind() const noexcept { return kind_; }
  const std::string& zk_error() const noexcept { return zk_error_; }

 private:
  Kind kind_;
  std::string zk_error_;
};

namespace coord {

class SessionImpl;  // src/coord; owns the ZooKeeper handle.

enum class SessionState {
  kConnecting,  // not yet connected for the first time
  kConnected,   // connected, session valid
  kSuspended,   // connection lost; the session may or may not still be alive on the server
  kExpired,     // the server ended the session (or close() was called): final
};
const char* to_string(SessionState state);

struct SessionOptions {
  // "host:port[,host:port...][/chroot]". The chroot node is created when missing.
  std::string connect = "127.0.0.1:2181/clupy";
  // Negotiated with the server (which clamps it to [2, 20] * tickTime).
  std::chrono::milliseconds session_timeout{10000};
  // How long the constructor waits for the first connection before throwing kConnectionLoss.
  std::chrono::milliseconds connect_timeout{15000};
  // "user:password" for ZooKeeper's digest scheme; empty: no authentication. With it, every node
  // this library creates gets the ACL "creator has all rights", so other identities cannot touch
  // it.
  std::string digest_auth;
};

// A ZooKeeper session. Owns the connection; closing (or destroying) it ends the session, which
// deletes its ephemeral nodes (releases its locks, leaves its elections).
// Thread-safe. Must outlive every primitive made from it only in the sense that primitives made
// from a closed or destroyed Session throw kSessionExpired; nothing dangles.
class Session {
 public:
  // Connects and waits up to options.connect_timeout for the session to be established.
  // Throws CoordError (kBadArgument, kConnectionLoss, kAuthFailed).
  explicit Session(SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  SessionState state() const;
  // The server's session id (0 before the first connection).
  std::int64_t session_id() const;
  // The negotiated session timeout.
  std::chrono::milliseconds session_timeout() const;

  // Calls `listener(state)` on the event thread on every state change, in order. Returns an id
  // for remove_state_listener. A listener added after expiry is called once with kExpired.
  using StateListener = std::function<void(SessionState)>;
  std::uint64_t add_state_listener(StateListener listener);
  void remove_state_listener(std::uint64_t id);

  // Blocks until kConnected (true), the session expires or the timeout passes (false).
  bool wait_connected(std::chrono::milliseconds timeout);

  // Ends the session now. Idempotent. Afterwards state() is kExpired.
  void close();

  // The password of the session (16 bytes), which with session_id() lets another handle join the
  // same session; used by tests to force expiry.
  std::string session_password() const;

  // Count of watches this Session has set on the server since it started (instrumentation: the
  // recipes set one watch per wait, which tests check to prove there is no herd effect).
  std::uint64_t watches_set() const;

  const std::shared_ptr<SessionImpl>& impl() const { return impl_; }

 private:
  std::shared_ptr<SessionImpl> impl_;
};

// Where the cluster this process belongs to keeps its coordination: in a task, the session
// options its server put in the worker's environment; in a program after clupy::init(), what the
// master announced (its `coordination:` section: connect string with chroot, session timeout,
// digest). So a task and the program that submitted it share locks, barriers and values:
//   clupy::coord::Session zk(clupy::coord::cluster_session_options());
//   clupy::coord::Lock lock(zk, "/jobs/report");
// Throws CoordError kNotConfigured when the master has no coordination: section or
// clupy::init() was not called. Thread-safe; does not connect.
SessionOptions cluster_session_options();

// Why a Lease or a leadership was lost.
enum class LossReason { kSuspended, kExpired, kReleased };
const char* to_string(LossReason reason);

class LeaseState;  // src/coord

// A held lock, read or write lock, or semaphore slot. Releases on destruction (best effort: if
// the session is gone, the server has already dropped the node). Movable, not copyable.
// Thread-safe.
class Lease {
 public:
  Lease() = default;
  explicit Lease(std::shared_ptr<LeaseState> state);
  ~Lease();
  Lease(Lease&&) noexcept;
  Lease& operator=(Lease&&) noexcept;

  // True while the lease's node exists and its session has stayed connected since it was
  // acquired. Once false, it stays false (re-acquire to hold again).
  bool still_held() const;
  // Calls `callback` once on the event thread when the lease is lost through its session
  // (kSuspended or kExpired); at once (on the event thread) when it already was. Not called on
  // release().
  void on_lost(std::function<void(LossReason)> callback);
  // Deletes the node. Idempotent. Throws nothing; a release that could not reach the server is
  // safe because the node is ephemeral and the session's loss already reported the lease lost.
  void release() noexcept;
  // The path of the node that represents this lease, and its creation zxid: a fencing token that
  // grows with every acquisition of the same lock.
  const std::string& node() const;
  std::int64_t fencing_token() const;

 private:
  std::shared_ptr<LeaseState> state_;
};

// A mutual-exclusion lock at `path` (a directory node, created when missing). Each waiter
// watches only the node just before its own. Not reentrant: a second acquire from the same
// process waits like any other party. Thread-safe; the object holds no lock state itself.
class Lock {
 public:
  Lock(Session& session, std::string path);
  // Blocks until held. Throws CoordError (kSessionExpired, ...).
  Lease acquire();
  // Waits up to `timeout`; nullopt when it passed (the waiting node is deleted).
  std::optional<Lease> try_acquire_for(std::chrono::milliseconds timeout);
  // Does not wait.
  std::optional<Lease> try_acquire();

 private:
  std::shared_ptr<SessionImpl> session_;
  std::string path_;
};

// A read/write lock at `path`: many readers or one writer; FIFO, so a waiting writer holds back
// later readers. A reader waits on the last writer before it; a writer on the node before it.
class SharedMutex {
 public:
  SharedMutex(Session& session, std::string path);
  Lease lock();  // exclusive
  std::optional<Lease> try_lock_for(std::chrono::milliseconds timeout);
  Lease lock_shared();
  std::optional<Lease> try_lock_shared_for(std::chrono::milliseconds timeout);

 private:
  std::shared_ptr<SessionImpl> session_;
  std::string path_;
};

// A counting semaphore at `path` with `leases` slots. Every party must use the same count (it is
// checked against the count stored at `path`; a mismatch throws kBadArgument). Waiters queue on an
// internal lock, so only the head of the queue watches the lease set.
class Semaphore {
 public:
  Semaphore(Session& session, std::string path, int leases);
  Lease acquire();
  std::optional<Lease> try_acquire_for(std::chrono::milliseconds timeout);

 private:
  std::shared_ptr<SessionImpl> session_;
  std::string path_;
  int leases_;
};

// ZooKeeper's "barrier" recipe: a gate. While the node at `path` exists, wait() blocks; remove()
// opens it for everyone. The gate node is persistent (it survives its creator's session).
class Barrier {
 public:
  Barrier(Session& session, std::string path);
  // Closes the gate. Returns false when it was closed already.
  bool set();
  // Opens the gate. Returns false when it was open already.
  bool remove();
  // Blocks until the gate is open; false when the timeout passed first.
  bool wait(std::chrono::milliseconds timeout);

 private:
  std::shared_ptr<SessionImpl> session_;
  std::string path_;
};

// ZooKeeper's "double barrier" recipe: enter() blocks until `parties` processes have entered;
// leave() blocks until all of them have left. One round at a time per path: start the next round
// only once leave() has returned everywhere. Each process uses its own DoubleBarrier object.
class DoubleBarrier {
 public:
  DoubleBarrier(Session& session, std::string path, int parties);
  ~DoubleBarrier();
  // False when the timeout passed first (this party's node is then removed again).
  bool enter(std::chrono::milliseconds timeout);
  bool leave(std::chrono::milliseconds timeout);

 private:
  std::shared_ptr<SessionImpl> session_;
  std::string path_;
  int parties_;
  std::string my_node_;  // empty outside enter()..leave()
};

// Leader election at `path`. start() joins it; the participant with the lowest sequence number
// leads; each other participant watches only the one just before it. The callbacks run on the
// event thread. on_lost fires as soon as the session is suspended (before the server can expire
// the session and let another participant win), so a leader that follows its callbacks stops
// acting before anyone else can start: see docs/coordination.md for the fencing argument.
// After a suspension that ends in a reconnect of the same session, leadership is re-checked and
// may be gained again. After expiry the election is over for this object (expired() is true).
class LeaderElection {
 public:
  struct Callbacks {
    // Called with the leader's fencing token (the creation zxid of its election node).
    std::function<void(std::int64_t fencing_token)> on_gained;
    std::function<void(LossReason)> on_lost;
  };
  // `identity` is stored in the election node (e.g. the master's address), readable by anyone
  // through leader_identity().
  LeaderElection(Session& session, std::string path, std::string identity, Callbacks callbacks);
  // Leaves the election (on_lost(kReleased) if leading).
  ~LeaderElection();
  LeaderElection(const LeaderElection&) = delete;
  LeaderElection& operator=(const LeaderElection&) = delete;

  // Joins the election. Throws CoordError. Idempotent.
  void start();
  // Leaves; a leader gets on_lost(kReleased). Idempotent.
  void stop();
  bool is_leader() const;
  bool expired() const;
  // The identity stored by the current leader, read from ZooKeeper; nullopt when nobody leads.
  std::optional<std::string> leader_identity() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// A 64-bit counter stored at `path` (created with value 0 when missing), updated by
// compare-and-set on the node's version.
class Counter {
 public:
  Counter(Session& session, std::string path);
  std::int64_t get();
  // Adds and returns the new value. Throws kConnectionLoss when the server could not confirm the
  // update (it may or may not have happened; the caller decides).
  std::int64_t add(std::int64_t delta);
  // Sets to `desired` if the value is `expected`; returns whether it did.
  bool compare_and_set(std::int64_t expected, std::int64_t desired);

 private:
  std::shared_ptr<SessionImpl> session_;
  std::string path_;
};

// The untyped core of Value<T>: bytes at `path`, with change callbacks driven by watches.
class WatchedNode {
 public:
  WatchedNode(Session& session, std::string path);
  ~WatchedNode();
  WatchedNode(const WatchedNode&) = delete;
  WatchedNode& operator=(const WatchedNode&) = delete;
  std::optional<std::string> get() const;  // nullopt: no node
  void set(const std::string& bytes);      // creates the node when missing
  // Sets only if the node's version is `version` (-1: only if it does not exist). Returns whether.
  bool set_if_version(const std::string& bytes, int version);
  void remove();
  // Calls `callback(bytes or nullopt)` on the event thread with the current contents, then after
  // every change. Changes in quick succession may be coalesced: the latest contents always arrive.
  void watch(std::function<void(const std::optional<std::string>&)> callback);

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// The untyped core of Queue<T>: a FIFO of byte strings under `path` (persistent sequential nodes).
// Any number of producers and consumers; each item is taken by exactly one consumer.
class ByteQueue {
 public:
  ByteQueue(Session& session, std::string path);
  void push(const std::string& bytes);
  // Takes the head item, waiting up to `timeout`; nullopt when none arrived.
  std::optional<std::string> pop(std::chrono::milliseconds timeout);
  std::size_t size();

 private:
  std::shared_ptr<SessionImpl> session_;
  std::string path_;
};

}  // namespace coord
}  // namespace clupy

#include "clupy/detail/coord_typed.hpp"  // Value<T>, Queue<T>
