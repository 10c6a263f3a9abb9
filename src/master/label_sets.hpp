// The distinct label requirements of queued and running tasks, each stored once and shared by
// the tasks that ask for it: a task holds a 4-byte id instead of its own copy (most tasks ask
// for no label at all: id 0). Reference counted, so a set nobody uses any more is freed.
//
// Not thread-safe: owned by the scheduler on the master's io_context thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace clupy::master {

// Label requirements sorted by key, so equal requirements compare equal.
using Labels = std::vector<std::pair<std::string, std::string>>;

class LabelSets {
 public:
  using Id = std::uint32_t;
  static constexpr Id kNone = 0;  // no requirement; needs no acquire or release

  // Returns the id of `labels` (sorted here), taking one reference; kNone for no labels.
  Id acquire(Labels labels);
  // Drops one reference taken by acquire; the set is freed with its last reference.
  void release(Id id);
  // The labels of a live id (empty for kNone).
  const Labels& get(Id id) const;
  // Distinct sets in use.
  std::size_t size() const { return by_labels_.size(); }

 private:
  struct Entry {
    Labels labels;
    std::uint32_t references = 0;
  };
  std::vector<Entry> entries_;  // entries_[id - 1]
  std::vector<Id> free_;        // ids of freed entries, reused first
  std::map<Labels, Id> by_labels_;
  Labels none_;
};

}  // namespace clupy::master
