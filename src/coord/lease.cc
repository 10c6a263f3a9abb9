// Lease: a held lock, read/write lock or semaphore slot, and how its loss is reported.
#include <spdlog/spdlog.h>

#include "coord/lease_state.hpp"

namespace clupy::coord {

LeaseState::LeaseState(std::shared_ptr<SessionImpl> session_in, std::string path_in,
                       std::int64_t token_in, std::uint64_t epoch_in)
    : session(std::move(session_in)), path(std::move(path_in)), token(token_in), epoch(epoch_in) {}

bool LeaseState::held() const {
  return !released.load() && session->loss_epoch() == epoch &&
         session->state() == SessionState::kConnected;
}

void LeaseState::report(LossReason reason) {
  std::function<void(LossReason)> callback;
  {
    std::lock_guard lock(mu);
    if (reported || released.load() || !on_lost) return;
    reported = true;
    callback = on_lost;
  }
  spdlog::warn("coord: lease {} lost ({})", path, to_string(reason));
  callback(reason);
}

void LeaseState::release() noexcept {
  if (released.exchange(true)) return;
  std::uint64_t id = 0;
  {
    std::lock_guard lock(mu);
    id = listener;
    listener = 0;
  }
  try {
    if (id != 0) session->remove_state_listener(id);
    if (session->state() == SessionState::kExpired) return;  // the server dropped the node
    if (session->state() == SessionState::kConnected) {
      session->remove(path);
      return;
    }
    // Suspended: deleting now would block the caller until the reconnect; the event thread does
    // it instead, so the node does not outlive the lease if the same session comes back.
    session->post([session = session, path = path] {
      try {
        session->remove(path);
      } catch (const CoordError&) {
        // Expired meanwhile: the server dropped the node.
      }
    });
  } catch (const std::exception& e) {
    spdlog::warn("coord: releasing {}: {}", path, e.what());
  }
}

Lease::Lease(std::shared_ptr<LeaseState> state) : state_(std::move(state)) {}
Lease::~Lease() { release(); }
Lease::Lease(Lease&& other) noexcept = default;
Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
  }
  return *this;
}

bool Lease::still_held() const { return state_ && state_->held(); }

void Lease::on_lost(std::function<void(LossReason)> callback) {
  if (!state_) return;
  std::weak_ptr<LeaseState> weak = state_;
  auto& session = state_->session;
  {
    std::lock_guard lock(state_->mu);
    state_->on_lost = std::move(callback);
    if (state_->listener == 0 && !state_->released.load()) {
      state_->listener = session->add_state_listener([weak](SessionState state) {
        auto self = weak.lock();
        if (!self) return;
        if (state == SessionState::kSuspended) self->report(LossReason::kSuspended);
        if (state == SessionState::kExpired) self->report(LossReason::kExpired);
      });
    }
  }
  // Lost before the listener existed: report it now (report() fires only once either way).
  if (session->loss_epoch() != state_->epoch) {
    session->post([weak, session] {
      auto self = weak.lock();
      if (!self) return;
      self->report(session->state() == SessionState::kExpired ? LossReason::kExpired
                                                              : LossReason::kSuspended);
    });
  }
}

void Lease::release() noexcept {
  if (state_) state_->release();
}

const std::string& Lease::node() const {
  static const std::string kNone;
  return state_ ? state_->path : kNone;
}

std::int64_t Lease::fencing_token() const { return state_ ? state_->token : 0; }

}  // namespace clupy::coord
