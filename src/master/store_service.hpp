// The master's side of the file store (docs/store.md): the embedded redis-server when the
// configuration says `store: embedded`, what clients and servers are told about the store, and
// the janitor, run in the background so that a slow or unreachable Redis never stalls the
// master's I/O thread.
//
// Threading: construct and destroy on the master's main thread (an embedded redis-server is
// tied to the thread that started it); maintain(), job_ended() and the getters may be called
// from any one thread (the master's io_context) and never block on Redis: the janitor's work
// runs on a thread this object owns. Errors: only the constructor throws (StoreError when the
// embedded redis-server cannot start); Redis failures later are logged, counted and retried.
#pragma once

#include <chrono>
#include <clupy/store.hpp>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/store_config.hpp"

namespace clupy::store {
class EmbeddedRedis;
class Janitor;
}  // namespace clupy::store

namespace clupy::master {

// What the janitor has done since the master started (for logs now, metrics later).
struct StoreCounters {
  std::uint64_t sweeps = 0;          // sweeps that completed
  std::uint64_t sweep_failures = 0;  // sweeps that failed (Redis down, an error reply)
  std::uint64_t job_cleanups = 0;    // jobs whose temporary files were removed
  std::uint64_t job_cleanup_failures = 0;
  std::map<std::string, std::uint64_t> files_removed;  // by reason: idle_ttl, over_budget, ...
  std::map<std::string, std::uint64_t> bytes_removed;  // file bytes, by the same reasons
  std::uint64_t blobs_deleted = 0;
  std::uint64_t chunk_bytes_freed = 0;
  std::uint64_t files = 0;       // files in the store after the last sweep
  std::uint64_t live_bytes = 0;  // their total size
  bool redis_reachable = false;  // the last sweep or cleanup reached Redis
};

class StoreService {
 public:
  // `data_dir` is the master's state directory; an embedded redis-server lives in
  // <data_dir>/store. Throws ConfigError naming key 'store.redis' for a Redis URL the store
  // cannot read, StoreError if the embedded server cannot start or the section is unusable
  // (kInvalidArgument). Does not contact an external Redis: the first maintain() does.
  StoreService(const common::StoreSection& section, const std::string& data_dir);
  // Stops the janitor thread (after the operation in progress), then the embedded server.
  ~StoreService();
  StoreService(const StoreService&) = delete;
  StoreService& operator=(const StoreService&) = delete;

  // The URL clients and servers are given. For an embedded server this is a unix socket on
  // the master's machine, usable only by servers and clients running there.
  const std::string& redis_url() const noexcept { return options_.redis_url; }
  // What clients and servers are told: URL, key prefix and chunk size (other knobs default).
  const StoreOptions& client_options() const noexcept { return options_; }

  // Called on every maintenance tick: starts a sweep in the background when sweep_interval has
  // passed since the last one started and none is running, and retries the temporary-file
  // cleanups that failed. Never throws, never waits for Redis.
  void maintain(std::chrono::steady_clock::time_point now);
  // The job ended: its temporary files (tmp/<job_id>/) are removed in the background; if Redis
  // is unreachable the removal is retried with the next sweep. Never throws.
  void job_ended(const std::string& job_id);

  StoreCounters counters() const;

 private:
  void run();
  void sweep();
  bool clean_job(const std::string& job_id);
  void note_reachable(bool reachable, const std::string& what);

  common::StoreSection section_;
  std::unique_ptr<store::EmbeddedRedis> embedded_;
  StoreOptions options_;
  std::unique_ptr<store::Janitor> janitor_;  // used by thread_ only
  bool warned_ = false;                      // used by thread_ only

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool sweep_requested_ = false;
  bool sweeping_ = false;
  std::chrono::steady_clock::time_point next_sweep_{};
  std::deque<std::string> jobs_to_clean_;
  std::deque<std::string> jobs_to_retry_;
  StoreCounters counters_;
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace clupy::master
