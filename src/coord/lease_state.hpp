// The shared state behind a Lease, and the queue-of-sequential-nodes acquisition that Lock,
// SharedMutex and Semaphore are built from.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "coord/session_impl.hpp"

namespace clupy::coord {

class LeaseState {
 public:
  LeaseState(std::shared_ptr<SessionImpl> session, std::string path, std::int64_t token,
             std::uint64_t epoch);
  bool held() const;
  // Calls on_lost once (not after release()).
  void report(LossReason reason);
  void release() noexcept;

  const std::shared_ptr<SessionImpl> session;
  const std::string path;
  const std::int64_t token;
  const std::uint64_t epoch;  // the session's loss epoch when the lease was confirmed
  std::atomic<bool> released{false};

  std::mutex mu;
  std::function<void(LossReason)> on_lost;
  bool reported = false;
  std::uint64_t listener = 0;
};

// A node of a lock queue: "<guid>-<kind>-<sequence>".
struct QueueEntry {
  std::string name;
  std::string kind;
  std::int64_t sequence;
};

// Parses and sorts by sequence the children of a lock directory, skipping foreign names.
std::vector<QueueEntry> sorted_queue(const std::vector<std::string>& names);

// Decides, given the sorted queue and the index of our node, which node to wait for (its name),
// or nullopt when our node holds the lock.
using Predecessor =
    std::function<std::optional<std::string>(const std::vector<QueueEntry>&, std::size_t mine)>;

// Joins the queue in `dir` with a node of `kind` and waits until `predecessor` says it holds, or
// until `deadline` (nullopt: forever). On timeout the node is deleted and nullopt returned.
std::optional<Lease> acquire_in_queue(const std::shared_ptr<SessionImpl>& session,
                                      const std::string& dir, const std::string& kind,
                                      std::optional<Clock::time_point> deadline,
                                      const Predecessor& predecessor);

// Throws kBadArgument unless `path` is absolute, without a trailing slash.
void check_path(const std::string& path);

}  // namespace clupy::coord
