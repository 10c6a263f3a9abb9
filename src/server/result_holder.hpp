// The results a server keeps where they were made (protocol 1.4, docs/protocol.md#held-results):
// outcomes of at least the master's hold_threshold stay here, named by an id of this process,
// until the master frees them. They live in memory up to `memory_limit` bytes; beyond it the
// oldest are spilled to files under `spill_dir` (created on first use, emptied at start and at
// destruction). Not thread-safe: owned by the server's io_context thread.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>

namespace clupy::server {

class ResultHolder {
 public:
  ResultHolder(std::string spill_dir, std::size_t memory_limit);
  ~ResultHolder();
  ResultHolder(const ResultHolder&) = delete;
  ResultHolder& operator=(const ResultHolder&) = delete;

  // Keeps `outcome`; returns its id (never 0).
  std::uint64_t put(std::string outcome);
  // The outcome, from memory or its file; nullopt when it is not held (freed, never made, or
  // its file could not be read).
  std::optional<std::string> get(std::uint64_t id);
  // Forgets it (and deletes its file); false when it was not held.
  bool free(std::uint64_t id);
  // Forgets everything (the master that knew of these results is gone).
  void clear();

  struct Counters {
    std::size_t held = 0;          // results held now
    std::uint64_t bytes_held = 0;  // their bytes, in memory and on disk
    std::uint64_t bytes_in_memory = 0;
    std::uint64_t bytes_spilled = 0;  // of bytes_held, in files
    std::uint64_t results_kept_total = 0;
    std::uint64_t results_freed_total = 0;
    std::uint64_t bytes_spilled_total = 0;
  };
  const Counters& counters() const { return counters_; }

 private:
  struct Entry {
    std::string bytes;  // empty when spilled
    std::uint64_t size = 0;
    bool spilled = false;
    std::list<std::uint64_t>::iterator in_memory;  // position in memory_order_ when not spilled
  };
  std::string file_of(std::uint64_t id) const;
  // Spills the oldest results in memory until what stays fits memory_limit_.
  void spill_over_limit();
  void remove_spill_dir();

  std::string spill_dir_;
  std::size_t memory_limit_;
  std::unordered_map<std::uint64_t, Entry> entries_;
  std::list<std::uint64_t> memory_order_;  // ids in memory, oldest first
  std::uint64_t next_id_ = 1;
  bool spill_dir_made_ = false;
  Counters counters_;
};

}  // namespace clupy::server
