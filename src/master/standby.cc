// MasterElection: coord::LeaderElection plus what a master needs around it: a one-way state
// (standby, leading, lost), callbacks on a thread of their own (so a slow callback never holds up
// ZooKeeper events), the published address, a rejoin when a standby's session expires, and a
// pause detector that makes is_leader() false the moment a frozen process runs again.
#include "master/standby.hpp"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "clupy/errors.hpp"
#include "common/log.hpp"
#include "common/master_locator.hpp"
#include "coord/session_impl.hpp"

namespace clupy::master {
namespace {

auto log() { return common::logger("master"); }

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

// The pause detector's period: short against any session timeout ZooKeeper allows (>= 2 ticks).
constexpr milliseconds kTick{50};
constexpr milliseconds kRejoinRetry{1'000};
constexpr int kPublishAttempts = 8;

std::int64_t now_ns() {
  return duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// A CoordError at this edge becomes the error kinds the master's caller handles.
[[noreturn]] void rethrow_coord(const CoordError& e, const std::string& doing) {
  switch (e.kind()) {
    case CoordError::Kind::kAuthFailed:
    case CoordError::Kind::kBadArgument:
      throw ConfigError(doing + ": " + e.what());
    default:
      throw ConnectionError(doing + ": " + e.what());
  }
}

}  // namespace

class MasterElection::Impl : public std::enable_shared_from_this<MasterElection::Impl> {
 public:
  Impl(common::CoordinationSection section, std::string candidate, Callbacks callbacks)
      : section_(std::move(section)),
        candidate_(std::move(candidate)),
        callbacks_(std::move(callbacks)) {}

  void start() {
    {
      std::lock_guard lock(mu_);
      if (state_ != State::kIdle) return;
    }
    auto session = connect();
    gap_limit_ns_ = duration_cast<std::chrono::nanoseconds>(session->session_timeout()).count() / 2;
    last_tick_ns_ = now_ns();
    {
      std::lock_guard lock(mu_);
      state_ = State::kStandby;
    }
    auto self = shared_from_this();
    ticker_ = std::thread([self] { self->tick(); });
    worker_ = std::thread([self] { self->work(); });
    join(std::move(session));
  }

  bool wait_elected(milliseconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return state_ != State::kStandby; });
    return state_ == State::kLeading;
  }

  bool publish(const std::string& host, int port) {
    std::shared_ptr<coord::SessionImpl> session;
    common::MasterLocation location;
    {
      std::lock_guard lock(mu_);
      if (state_ != State::kLeading) return false;
      session = session_->impl();
      location.fencing_token = token_;
    }
    const bool bracket = host.find(':') != std::string::npos && host.front() != '[';
    location.url = "clupy://" + (bracket ? "[" + host + "]" : host) + ":" + std::to_string(port);
    location.candidate = candidate_;
    const std::string data = common::encode_master_location(location);
    const std::string path = section_.election_path + "/leader";
    try {
      for (int attempt = 0; attempt < kPublishAttempts; ++attempt) {
        const int rc = session->create(path, data, ZOO_EPHEMERAL);
        if (rc == ZOK) return confirm_published(location);
        if (rc == ZNONODE) {
          session->ensure_path(section_.election_path);
          continue;
        }
        // ZNODEEXISTS: ours (a retried create, or a second publish), or a node a former leader
        // left behind while its session lives on. This master leads, so that one is stale.
        Stat stat{};
        std::string old;
        if (session->get(path, &old, &stat, nullptr) == ZNONODE) continue;
        if (stat.ephemeralOwner == session->session_id()) {
          session->set(path, data, nullptr);
          return confirm_published(location);
        }
        log()->warn("removing the address a former master left at {}: {}", path, old);
        session->remove(path, stat.version);
      }
    } catch (const CoordError& e) {
      if (e.kind() == CoordError::Kind::kSessionExpired) return false;
      rethrow_coord(e, "publishing the master's address at " + path);
    }
    throw ConnectionError("publishing the master's address at " + path +
                          ": another session keeps recreating it");
  }

  bool is_leader() const {
    // Read the tick first: a tick stored after a pause was detected is stored after the loss.
    const std::int64_t tick = last_tick_ns_.load();
    bool leading = false;
    {
      std::lock_guard lock(mu_);
      leading = state_ == State::kLeading && election_ && election_->is_leader();
    }
    // The clock last: a pause anywhere above shows up here.
    return leading && now_ns() - tick <= gap_limit_ns_;
  }

  std::int64_t fencing_token() const {
    std::lock_guard lock(mu_);
    return token_;
  }

  State state() const {
    std::lock_guard lock(mu_);
    return state_;
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      if (state_ == State::kStopped) return;
      state_ = State::kStopped;
      events_.clear();
    }
    cv_.notify_all();
    if (ticker_.joinable()) ticker_.join();
    if (worker_.joinable()) worker_.join();
    leave();
  }

 private:
  enum class EventKind { kElected, kLost, kRejoin };
  struct Event {
    EventKind kind;
    std::int64_t token = 0;
    coord::LossReason reason = coord::LossReason::kSuspended;
  };

  // After the write: false when leadership was lost meanwhile (the node goes with the session,
  // which leave() closes once on_lost has returned).
  bool confirm_published(const common::MasterLocation& location) {
    {
      std::lock_guard lock(mu_);
      if (state_ != State::kLeading) return false;
    }
    log()->info("{} published {} at {}/leader (fencing token {})", candidate_, location.url,
                section_.election_path, location.fencing_token);
    return true;
  }

  std::shared_ptr<coord::Session> connect() {
    try {
      return std::make_shared<coord::Session>(common::session_options(section_));
    } catch (const CoordError& e) {
      rethrow_coord(e, "joining the master election at " + section_.connect);
    }
  }

  // Joins the election with `session` (kept, with the election, in the members).
  void join(std::shared_ptr<coord::Session> session) {
    std::weak_ptr<Impl> weak = weak_from_this();
    std::uint64_t generation = 0;
    {
      std::lock_guard lock(mu_);
      generation = ++generation_;
    }
    session->add_state_listener([weak, generation](coord::SessionState state) {
      if (state != coord::SessionState::kExpired) return;
      if (auto self = weak.lock()) self->on_expired(generation);
    });
    coord::LeaderElection::Callbacks callbacks;
    callbacks.on_gained = [weak](std::int64_t token) {
      if (auto self = weak.lock()) self->on_gained(token);
    };
    callbacks.on_lost = [weak](coord::LossReason reason) {
      if (auto self = weak.lock())
        self->lose(reason, "the ZooKeeper session was " + std::string(coord::to_string(reason)));
    };
    auto election = std::make_shared<coord::LeaderElection>(
        *session, section_.election_path + "/candidates", candidate_, std::move(callbacks));
    {
      std::lock_guard lock(mu_);
      session_ = session;
      election_ = election;
    }
    try {
      // Not under mu_: the first check may call on_gained on the event thread at once.
      election->start();
    } catch (const CoordError& e) {
      rethrow_coord(e, "joining the master election at " + section_.connect);
    }
    log()->info("{} joined the master election at {}{} (session 0x{:x})", candidate_,
                section_.connect, section_.election_path, session->session_id());
  }

  // On the event thread.
  void on_gained(std::int64_t token) {
    {
      std::lock_guard lock(mu_);
      // A leader that lost never leads again in this process: a regain after the same session
      // reconnected is ignored (the session is closed as soon as on_lost has returned).
      if (state_ != State::kStandby) return;
      state_ = State::kLeading;
      token_ = token;
      events_.push_back({EventKind::kElected, token});
    }
    log()->info("{} is elected master (fencing token {})", candidate_, token);
    cv_.notify_all();
  }

  // On the event thread, or the ticker.
  void lose(coord::LossReason reason, const std::string& why) {
    {
      std::lock_guard lock(mu_);
      if (state_ != State::kLeading) return;
      state_ = State::kLost;
      events_.push_back({EventKind::kLost, 0, reason});
    }
    log()->error("{} is no longer the master: {}; it stops dispatching", candidate_, why);
    cv_.notify_all();
  }

  // On the event thread: a standby whose session expired joins again with a new one (nothing to
  // fence: it never led). A leader's expiry went through lose() already.
  void on_expired(std::uint64_t generation) {
    {
      std::lock_guard lock(mu_);
      if (state_ != State::kStandby || generation != generation_) return;
      events_.push_back({EventKind::kRejoin});
    }
    cv_.notify_all();
  }

  // The pause detector.
  void tick() {
    std::unique_lock lock(mu_);
    while (state_ != State::kStopped) {
      lock.unlock();
      const std::int64_t now = now_ns();
      const std::int64_t gap = now - last_tick_ns_.load();
      if (gap > gap_limit_ns_) {
        lose(coord::LossReason::kSuspended, "this process did not run for " +
                                                std::to_string(gap / 1'000'000) +
                                                " ms (paused?), so its session may have expired");
      }
      last_tick_ns_.store(now);
      lock.lock();
      cv_.wait_for(lock, kTick, [&] { return state_ == State::kStopped; });
    }
  }

  // Delivers callbacks in order, rejoins, and leaves after a loss.
  void work() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return state_ == State::kStopped || !events_.empty(); });
      if (state_ == State::kStopped) return;
      const Event event = events_.front();
      events_.pop_front();
      lock.unlock();
      switch (event.kind) {
        case EventKind::kElected:
          if (callbacks_.on_elected) callbacks_.on_elected(event.token);
          break;
        case EventKind::kLost:
          if (callbacks_.on_lost) callbacks_.on_lost(event.reason);
          // The master has stopped dispatching: let a standby in now rather than after expiry.
          leave();
          break;
        case EventKind::kRejoin:
          rejoin();
          break;
      }
      lock.lock();
    }
  }

  void rejoin() {
    log()->warn("{}: the standby's ZooKeeper session expired; joining the election again",
                candidate_);
    leave();
    try {
      join(connect());
    } catch (const Error& e) {
      log()->warn("{}: {}; retrying in {} ms", candidate_, e.what(), kRejoinRetry.count());
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, kRejoinRetry, [&] { return state_ == State::kStopped; })) return;
      events_.push_back({EventKind::kRejoin});
    }
  }

  // Ends the session, which deletes its election node and the address it published in one
  // step on the server (when it can still reach one; else they go when the session expires).
  // Runs on the worker, or in stop() once the worker has ended.
  void leave() {
    std::shared_ptr<coord::LeaderElection> election;
    std::shared_ptr<coord::Session> session;
    {
      std::lock_guard lock(mu_);
      election = std::move(election_);
      session = std::move(session_);
    }
    if (session) session->close();
    election.reset();  // after the close: nothing left to delete, and its callbacks are ignored
  }

  const common::CoordinationSection section_;
  const std::string candidate_;
  const Callbacks callbacks_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::kIdle;
  std::int64_t token_ = 0;
  std::uint64_t generation_ = 0;  // of the current session, so an old one's expiry is ignored
  std::deque<Event> events_;
  std::shared_ptr<coord::Session> session_;
  std::shared_ptr<coord::LeaderElection> election_;

  std::atomic<std::int64_t> last_tick_ns_{0};
  std::int64_t gap_limit_ns_ = 0;  // set in start(), before the threads
  std::thread ticker_;
  std::thread worker_;
};

MasterElection::MasterElection(common::CoordinationSection section, std::string candidate,
                               Callbacks callbacks)
    : impl_(
          std::make_shared<Impl>(std::move(section), std::move(candidate), std::move(callbacks))) {}

MasterElection::~MasterElection() { impl_->stop(); }

void MasterElection::start() { impl_->start(); }
bool MasterElection::wait_elected(std::chrono::milliseconds timeout) {
  return impl_->wait_elected(timeout);
}
bool MasterElection::publish(const std::string& host, int port) {
  return impl_->publish(host, port);
}
bool MasterElection::is_leader() const { return impl_->is_leader(); }
std::int64_t MasterElection::fencing_token() const { return impl_->fencing_token(); }
MasterElection::State MasterElection::state() const { return impl_->state(); }
void MasterElection::stop() { impl_->stop(); }

std::string MasterElection::default_candidate() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host[0] != '\0' ? host : "unknown-host") + " pid " +
         std::to_string(::getpid());
}

std::string MasterElection::advertised_host(const common::CoordinationSection& section,
                                            const std::string& bind) {
  if (!section.advertise.empty()) return section.advertise;
  if (!bind.empty() && bind != "0.0.0.0" && bind != "::" && bind != "[::]") return bind;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

const char* to_string(MasterElection::State state) {
  switch (state) {
    case MasterElection::State::kIdle:
      return "idle";
    case MasterElection::State::kStandby:
      return "standby";
    case MasterElection::State::kLeading:
      return "leading";
    case MasterElection::State::kLost:
      return "lost";
    case MasterElection::State::kStopped:
      return "stopped";
  }
  return "?";
}

}  // namespace clupy::master
