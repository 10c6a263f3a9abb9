// LeaderElection: ZooKeeper's leader election recipe. Every decision runs on the Session's event
// thread, so the election's state changes one step at a time and callbacks come in order.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "coord/lease_state.hpp"

namespace clupy::coord {

class LeaderElection::Impl : public std::enable_shared_from_this<LeaderElection::Impl> {
 public:
  Impl(std::shared_ptr<SessionImpl> session, std::string path, std::string identity,
       Callbacks callbacks)
      : session_(std::move(session)),
        path_(std::move(path)),
        identity_(std::move(identity)),
        callbacks_(std::move(callbacks)) {}

  void start() {
    {
      std::lock_guard lock(mu_);
      if (running_ || expired_) return;
    }
    Stat stat{};
    std::string name = session_->create_sequential(path_, "n", identity_, true, &stat);
    std::weak_ptr<Impl> weak = weak_from_this();
    {
      std::lock_guard lock(mu_);
      running_ = true;
      node_ = name;
      token_ = stat.czxid;
      listener_ = session_->add_state_listener([weak](SessionState state) {
        if (auto self = weak.lock()) self->on_state(state);
      });
    }
    post_check();
  }

  void stop() {
    std::string node;
    std::uint64_t listener = 0;
    bool was_leader = false;
    {
      std::lock_guard lock(mu_);
      if (!running_) return;
      running_ = false;
      node = node_;
      node_.clear();
      listener = listener_;
      listener_ = 0;
      was_leader = leader_;
      leader_ = false;
    }
    session_->remove_state_listener(listener);
    try {
      if (session_->state() != SessionState::kExpired) session_->remove(path_ + "/" + node);
    } catch (const CoordError& e) {
      spdlog::warn("coord: leaving election {}: {}", path_, e.what());
    }
    if (was_leader && callbacks_.on_lost) {
      auto callbacks = callbacks_;
      session_->post([callbacks] { callbacks.on_lost(LossReason::kReleased); });
    }
  }

  bool is_leader() const {
    std::lock_guard lock(mu_);
    return leader_ && session_->loss_epoch() == leader_epoch_;
  }

  void drain() { session_->drain_events(); }

  bool expired() const {
    std::lock_guard lock(mu_);
    return expired_;
  }

  std::optional<std::string> leader_identity() const {
    for (;;) {
      auto names = session_->children(path_, nullptr);
      auto queue = sorted_queue(names.value_or(std::vector<std::string>{}));
      if (queue.empty()) return std::nullopt;
      std::string data;
      if (session_->get(path_ + "/" + queue.front().name, &data, nullptr, nullptr) == ZOK) {
        return data;
      }
    }
  }

 private:
  void post_check() {
    std::weak_ptr<Impl> weak = weak_from_this();
    session_->post([weak] {
      if (auto self = weak.lock()) self->check();
    });
  }

  // Runs on the event thread: are we first? If not, watch the node just before ours.
  void check() {
    std::string node;
    {
      std::lock_guard lock(mu_);
      if (!running_ || expired_) return;
      node = node_;
    }
    try {
      const auto epoch = session_->loss_epoch();
      auto names = session_->children(path_, nullptr);
      auto queue = sorted_queue(names.value_or(std::vector<std::string>{}));
      auto it = std::find_if(queue.begin(), queue.end(),
                             [&](const QueueEntry& e) { return e.name == node; });
      if (it == queue.end()) {
        spdlog::error("coord: election node {}/{} vanished; leaving the election", path_, node);
        std::lock_guard lock(mu_);
        running_ = false;
        return;
      }
      if (it == queue.begin()) {
        if (session_->loss_epoch() != epoch) return;  // the reconnect will check again
        std::int64_t token = 0;
        {
          std::lock_guard lock(mu_);
          if (leader_) return;
          leader_ = true;
          leader_epoch_ = epoch;
          token = token_;
        }
        spdlog::info("coord: {} leads {} (token {})", identity_, path_, token);
        if (callbacks_.on_gained) callbacks_.on_gained(token);
        return;
      }
      const std::string before = path_ + "/" + std::prev(it)->name;
      {
        std::lock_guard lock(mu_);
        // One watch per predecessor: a re-check (after a reconnect) does not add another.
        if (watching_ == before && watch_ && !watch_->fired.load()) return;
      }
      std::weak_ptr<Impl> weak = weak_from_this();
      auto watch = session_->new_watch([weak] {
        if (auto self = weak.lock()) self->check();
      });
      if (session_->watch_existing(before, watch) == ZNONODE) {
        post_check();
        return;
      }
      std::lock_guard lock(mu_);
      watching_ = before;
      watch_ = watch;
    } catch (const CoordError& e) {
      // Connection loss: the reconnect triggers a new check. Expiry: on_state ends the election.
      spdlog::warn("coord: election {}: {}", path_, e.what());
    }
  }

  void on_state(SessionState state) {
    bool lost = false;
    {
      std::lock_guard lock(mu_);
      if (!running_) return;
      if (state == SessionState::kSuspended || state == SessionState::kExpired) {
        lost = leader_;
        leader_ = false;
        if (state == SessionState::kExpired) {
          expired_ = true;
          running_ = false;
        }
      }
    }
    if (lost && callbacks_.on_lost) {
      callbacks_.on_lost(state == SessionState::kExpired ? LossReason::kExpired
                                                         : LossReason::kSuspended);
    }
    if (state == SessionState::kConnected) check();
  }

  const std::shared_ptr<SessionImpl> session_;
  const std::string path_;
  const std::string identity_;
  const Callbacks callbacks_;

  mutable std::mutex mu_;
  bool running_ = false;
  bool expired_ = false;
  bool leader_ = false;
  std::uint64_t leader_epoch_ = 0;
  std::string node_;
  std::int64_t token_ = 0;
  std::uint64_t listener_ = 0;
  std::string watching_;
  std::shared_ptr<Watch> watch_;
};

LeaderElection::LeaderElection(Session& session, std::string path, std::string identity,
                               Callbacks callbacks)
    : impl_(std::make_shared<Impl>(session.impl(), (check_path(path), std::move(path)),
                                   std::move(identity), std::move(callbacks))) {}

LeaderElection::~LeaderElection() {
  impl_->stop();
  // No callback of this election runs after its destructor returns (unless it is one of them).
  impl_->drain();
}

void LeaderElection::start() { impl_->start(); }
void LeaderElection::stop() { impl_->stop(); }
bool LeaderElection::is_leader() const { return impl_->is_leader(); }
bool LeaderElection::expired() const { return impl_->expired(); }
std::optional<std::string> LeaderElection::leader_identity() const {
  return impl_->leader_identity();
}

}  // namespace clupy::coord
