// Barrier (a gate node) and DoubleBarrier (enter/leave with n parties), after ZooKeeper's
// "Barriers" and "Double Barriers" recipes.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "coord/lease_state.hpp"

namespace clupy::coord {

namespace {

constexpr const char* kReady = "_ready";

Clock::time_point deadline_after(std::chrono::milliseconds timeout) {
  return Clock::now() + std::max(timeout, std::chrono::milliseconds(0));
}

// The parties' nodes, in a fixed order every party agrees on.
std::vector<std::string> parties_of(const std::optional<std::vector<std::string>>& names) {
  std::vector<std::string> parties;
  if (!names) return parties;
  for (const auto& name : *names) {
    if (name != kReady) parties.push_back(name);
  }
  std::sort(parties.begin(), parties.end());
  return parties;
}

}  // namespace

// ---- Barrier ----

Barrier::Barrier(Session& session, std::string path)
    : session_(session.impl()), path_(std::move(path)) {
  check_path(path_);
}

bool Barrier::set() {
  auto slash = path_.rfind('/');
  if (slash > 0) session_->ensure_path(path_.substr(0, slash));
  return session_->create(path_, "", ZOO_PERSISTENT) == ZOK;
}

bool Barrier::remove() { return session_->remove(path_) == ZOK; }

bool Barrier::wait(std::chrono::milliseconds timeout) {
  const auto deadline = deadline_after(timeout);
  for (;;) {
    auto watch = session_->new_watch();
    if (session_->watch_existing(path_, watch) == ZNONODE) return true;
    if (!session_->wait_for([&] { return watch->fired.load(); }, deadline)) return false;
  }
}

// ---- DoubleBarrier ----

DoubleBarrier::DoubleBarrier(Session& session, std::string path, int parties)
    : session_(session.impl()), path_(std::move(path)), parties_(parties) {
  check_path(path_);
  if (parties_ < 1) {
    throw CoordError(CoordError::Kind::kBadArgument, "", "coord: a barrier needs >= 1 party");
  }
}

DoubleBarrier::~DoubleBarrier() {
  if (my_node_.empty()) return;
  try {
    session_->remove(path_ + "/" + my_node_);
  } catch (const CoordError&) {
    // Expired: the ephemeral node is gone already.
  }
}

bool DoubleBarrier::enter(std::chrono::milliseconds timeout) {
  const auto deadline = deadline_after(timeout);
  const std::string ready = path_ + "/" + kReady;
  session_->ensure_path(path_);
  // Watch "ready" before joining, so its creation cannot slip between our count and our wait.
  auto watch = session_->new_watch();
  bool open = session_->exists(ready, nullptr, watch) == ZOK;
  my_node_ = new_guid();
  int rc = session_->create(path_ + "/" + my_node_, "", ZOO_EPHEMERAL);
  if (rc != ZOK && rc != ZNODEEXISTS) throw_zk(rc, "coord: enter " + path_);  // EXISTS: ours
  if (open) return true;
  for (;;) {
    auto parties = parties_of(session_->children(path_, nullptr));
    if (parties.size() >= static_cast<std::size_t>(parties_)) {
      session_->create(ready, "", ZOO_PERSISTENT);
      return true;
    }
    if (session_->wait_for([&] { return watch->fired.load(); }, deadline)) {
      if (session_->exists(ready, nullptr, nullptr) == ZOK) return true;
      watch = session_->new_watch();  // fired for another reason (e.g. a deleted ready)
      if (session_->exists(ready, nullptr, watch) == ZOK) return true;
      continue;
    }
    session_->remove(path_ + "/" + my_node_);
    my_node_.clear();
    return false;
  }
}

bool DoubleBarrier::leave(std::chrono::milliseconds timeout) {
  const auto deadline = deadline_after(timeout);
  const std::string ready = path_ + "/" + kReady;
  for (;;) {
    auto parties = parties_of(session_->children(path_, nullptr));
    bool present =
        !my_node_.empty() && std::find(parties.begin(), parties.end(), my_node_) != parties.end();
    if (parties.empty()) {
      my_node_.clear();
      return true;
    }
    if (present && parties.size() == 1) {
      // The last one out closes the round: our node and "ready" go together, so a party of the
      // next round never sees a stale "ready" or counts us.
      const std::string mine = path_ + "/" + my_node_;
      std::vector<zoo_op_t> ops(2);
      zoo_delete_op_init(&ops[0], mine.c_str(), -1);
      zoo_delete_op_init(&ops[1], ready.c_str(), -1);
      if (session_->multi(ops) != ZOK) session_->remove(mine);
      my_node_.clear();
      return true;
    }
    // The lowest waits for the highest; everyone else leaves and waits for the lowest.
    std::string wait_on;
    if (present && parties.front() == my_node_) {
      wait_on = parties.back();
    } else {
      if (present) {
        session_->remove(path_ + "/" + my_node_);
        my_node_.clear();
      }
      wait_on = parties.front();
    }
    auto watch = session_->new_watch();
    if (session_->watch_existing(path_ + "/" + wait_on, watch) == ZNONODE) continue;
    if (!session_->wait_for([&] { return watch->fired.load(); }, deadline)) return false;
  }
}

}  // namespace clupy::coord
