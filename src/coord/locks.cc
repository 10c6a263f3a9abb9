// Lock, SharedMutex and Semaphore: ZooKeeper's lock recipes on one queue of sequential
// ephemeral nodes per lock. Each waiter watches exactly one node, so a release wakes one process.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "coord/lease_state.hpp"

namespace clupy::coord {

namespace {

constexpr auto kForever = std::chrono::hours(24 * 365 * 10);

Clock::time_point deadline_after(std::chrono::milliseconds timeout) {
  return Clock::now() + std::max(timeout, std::chrono::milliseconds(0));
}

// Writers and plain locks wait for the node just before theirs.
std::optional<std::string> exclusive_predecessor(const std::vector<QueueEntry>& queue,
                                                 std::size_t mine) {
  if (mine == 0) return std::nullopt;
  return queue[mine - 1].name;
}

// Readers wait only for the last writer before them.
std::optional<std::string> shared_predecessor(const std::vector<QueueEntry>& queue,
                                              std::size_t mine) {
  for (std::size_t i = mine; i-- > 0;) {
    if (queue[i].kind == "write") return queue[i].name;
  }
  return std::nullopt;
}

}  // namespace

void check_path(const std::string& path) {
  if (path.empty() || path[0] != '/' || (path.size() > 1 && path.back() == '/')) {
    throw CoordError(CoordError::Kind::kBadArgument, "",
                     "coord: bad node path '" + path + "' (want /absolute/path)");
  }
}

std::vector<QueueEntry> sorted_queue(const std::vector<std::string>& names) {
  std::vector<QueueEntry> queue;
  for (const auto& name : names) {
    auto seq = sequence_of(name);
    auto first = name.find('-');
    auto last = name.rfind('-');
    if (seq < 0 || first == std::string::npos || last <= first) continue;
    queue.push_back({name, name.substr(first + 1, last - first - 1), seq});
  }
  std::sort(queue.begin(), queue.end(),
            [](const QueueEntry& a, const QueueEntry& b) { return a.sequence < b.sequence; });
  return queue;
}

std::optional<Lease> acquire_in_queue(const std::shared_ptr<SessionImpl>& session,
                                      const std::string& dir, const std::string& kind,
                                      std::optional<Clock::time_point> deadline,
                                      const Predecessor& predecessor) {
  Stat stat{};
  const std::string name = session->create_sequential(dir, kind, "", true, &stat);
  const std::string path = dir + "/" + name;
  auto give_up = [&] {
    try {
      session->remove(path);
    } catch (const CoordError&) {
      // Expired: the node is gone with the session.
    }
  };
  try {
    for (;;) {
      const auto epoch = session->loss_epoch();
      auto names = session->children(dir, nullptr);
      auto queue = sorted_queue(names.value_or(std::vector<std::string>{}));
      auto it = std::find_if(queue.begin(), queue.end(),
                             [&](const QueueEntry& e) { return e.name == name; });
      if (it == queue.end()) {
        throw CoordError(CoordError::Kind::kNoNode, "ZNONODE",
                         "coord: our node " + path + " vanished while waiting");
      }
      auto wait_for = predecessor(queue, static_cast<std::size_t>(it - queue.begin()));
      if (!wait_for) {
        // Held. A suspension during the check means we cannot vouch for it: look again.
        if (session->loss_epoch() != epoch || session->state() != SessionState::kConnected) {
          if (session->wait_connected(deadline.value_or(Clock::now() + kForever))) continue;
          if (session->state() == SessionState::kExpired) {
            throw CoordError(CoordError::Kind::kSessionExpired, "ZSESSIONEXPIRED",
                             "coord: the session expired while acquiring " + path);
          }
          break;
        }
        return Lease(std::make_shared<LeaseState>(session, path, stat.czxid, epoch));
      }
      if (deadline && Clock::now() >= *deadline) break;
      auto watch = session->new_watch();
      if (session->watch_existing(dir + "/" + *wait_for, watch) == ZNONODE) continue;
      if (!session->wait_for([&] { return watch->fired.load(); },
                             deadline.value_or(Clock::now() + kForever))) {
        break;
      }
    }
  } catch (const CoordError& e) {
    if (e.kind() != CoordError::Kind::kSessionExpired) give_up();
    throw;
  }
  give_up();
  return std::nullopt;
}

// ---- Lock ----

Lock::Lock(Session& session, std::string path) : session_(session.impl()), path_(std::move(path)) {
  check_path(path_);
}

Lease Lock::acquire() {
  return std::move(*acquire_in_queue(session_, path_, "lock", std::nullopt, exclusive_predecessor));
}

std::optional<Lease> Lock::try_acquire_for(std::chrono::milliseconds timeout) {
  return acquire_in_queue(session_, path_, "lock", deadline_after(timeout), exclusive_predecessor);
}

std::optional<Lease> Lock::try_acquire() { return try_acquire_for(std::chrono::milliseconds(0)); }

// ---- SharedMutex ----

SharedMutex::SharedMutex(Session& session, std::string path)
    : session_(session.impl()), path_(std::move(path)) {
  check_path(path_);
}

Lease SharedMutex::lock() {
  return std::move(
      *acquire_in_queue(session_, path_, "write", std::nullopt, exclusive_predecessor));
}

std::optional<Lease> SharedMutex::try_lock_for(std::chrono::milliseconds timeout) {
  return acquire_in_queue(session_, path_, "write", deadline_after(timeout), exclusive_predecessor);
}

Lease SharedMutex::lock_shared() {
  return std::move(*acquire_in_queue(session_, path_, "read", std::nullopt, shared_predecessor));
}

std::optional<Lease> SharedMutex::try_lock_shared_for(std::chrono::milliseconds timeout) {
  return acquire_in_queue(session_, path_, "read", deadline_after(timeout), shared_predecessor);
}

// ---- Semaphore ----

Semaphore::Semaphore(Session& session, std::string path, int leases)
    : session_(session.impl()), path_(std::move(path)), leases_(leases) {
  check_path(path_);
  if (leases_ < 1) {
    throw CoordError(CoordError::Kind::kBadArgument, "", "coord: a semaphore needs >= 1 lease");
  }
  // The count lives in the semaphore's node, so parties that disagree find out.
  const std::string count = std::to_string(leases_);
  auto slash = path_.rfind('/');
  if (slash > 0) session_->ensure_path(path_.substr(0, slash));
  if (session_->create(path_, count, ZOO_PERSISTENT) == ZOK) return;
  std::string stored;
  if (session_->get(path_, &stored, nullptr, nullptr) == ZOK && stored.empty()) {
    session_->set(path_, count, nullptr);
    stored = count;
  }
  if (stored != count) {
    throw CoordError(CoordError::Kind::kBadArgument, "",
                     "coord: semaphore " + path_ + " has " + stored + " leases, not " + count);
  }
}

std::optional<Lease> Semaphore::try_acquire_for(std::chrono::milliseconds timeout) {
  const auto deadline = deadline_after(timeout);
  // Only the holder of this gate looks at the lease set, so a freed lease wakes one waiter.
  auto gate = acquire_in_queue(session_, path_ + "/queue", "lock", deadline, exclusive_predecessor);
  if (!gate) return std::nullopt;
  const std::string dir = path_ + "/leases";
  Stat stat{};
  const std::string name = session_->create_sequential(dir, "lease", "", true, &stat);
  const std::string path = dir + "/" + name;
  try {
    for (;;) {
      const auto epoch = session_->loss_epoch();
      auto watch = session_->new_watch();
      auto names = session_->children(dir, watch);
      if (names && names->size() <= static_cast<std::size_t>(leases_)) {
        return Lease(std::make_shared<LeaseState>(session_, path, stat.czxid, epoch));
      }
      if (!session_->wait_for([&] { return watch->fired.load(); }, deadline)) break;
    }
  } catch (const CoordError& e) {
    if (e.kind() != CoordError::Kind::kSessionExpired) session_->remove(path);
    throw;
  }
  session_->remove(path);
  return std::nullopt;
}

Lease Semaphore::acquire() {
  for (;;) {
    if (auto lease =
            try_acquire_for(std::chrono::duration_cast<std::chrono::milliseconds>(kForever))) {
      return std::move(*lease);
    }
  }
}

}  // namespace clupy::coord
