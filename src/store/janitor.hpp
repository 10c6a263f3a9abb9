// The store's janitor: removes what nobody needs any more. The master runs sweep() from its
// maintenance timer and logs and counts the report; when a job ends it calls
// remove_job_temporaries(). Policy and guarantees: docs/store.md.
//
// Threading: like Store, one Janitor per thread. Several janitors (say, a standby master) may
// sweep the same store at once: every removal is a conditional script, so none is done twice.
// Errors: StoreError (kConnection when Redis is down after the retry window); a failed sweep
// leaves the store consistent and the next sweep finishes the work.
#pragma once

#include <chrono>
#include <clupy/store.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace clupy::store {

struct JanitorPolicy {
  // Total size of the files above which least recently used unpinned files are removed
  // (0: no budget).
  std::uint64_t memory_budget_bytes = 0;
  // Unpinned files not read or written for this long are removed (0: never).
  std::chrono::milliseconds idle_ttl = std::chrono::hours(24 * 7);
  // How long a blob whose writer stopped heartbeating is kept before it is collected, and how
  // long a replaced or removed version stays readable for readers that had it open.
  std::chrono::milliseconds orphan_grace = std::chrono::minutes(15);
};

struct Removal {
  enum class Reason {
    kIdleTtl,     // not accessed for idle_ttl
    kOverBudget,  // least recently used while the store was over its memory budget
    kJobEnded,    // a temporary file of a job that ended
    kOrphan,      // a blob whose writer died or stalled past the grace (name is empty)
  };
  Reason reason;
  std::string name;  // the file's name (empty for orphans)
  std::string blob;
  std::uint64_t bytes = 0;  // the file's size (0 for orphans: see JanitorReport::bytes_freed)
};

const char* to_string(Removal::Reason reason);

struct JanitorReport {
  std::vector<Removal> removed;
  std::uint64_t blobs_deleted = 0;  // retired blobs whose chunks were deleted in this sweep
  std::uint64_t chunks_deleted = 0;
  std::uint64_t bytes_freed = 0;  // bytes of the deleted chunks
  std::uint64_t files = 0;        // files left (after a sweep)
  std::uint64_t live_bytes = 0;   // their total size (what the budget is compared with)

  std::size_t count(Removal::Reason reason) const;
};

// Where the temporary files of a job live: "tmp/<job_id>/".
std::string job_temporary_prefix(std::string_view job_id);

class Janitor {
 public:
  // Validates the options (kInvalidArgument); connects lazily.
  Janitor(StoreOptions options, JanitorPolicy policy);
  ~Janitor();
  Janitor(Janitor&&) noexcept;
  Janitor& operator=(Janitor&&) noexcept;

  const JanitorPolicy& policy() const noexcept;

  // One pass, in this order: claim orphans past the grace, remove idle files past the TTL,
  // remove LRU files while over the budget, delete the chunks of blobs retired longer than the
  // grace ago (and of everything removed by this pass). `now` is compared with times taken from
  // the Redis server's clock; sweep() uses that clock itself.
  JanitorReport sweep();
  JanitorReport sweep(std::chrono::system_clock::time_point now);

  // Removes the unpinned files under job_temporary_prefix(job_id) and deletes their chunks.
  JanitorReport remove_job_temporaries(std::string_view job_id);

  // The Redis server's clock.
  std::chrono::system_clock::time_point server_time();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace clupy::store
