#include "master/label_sets.hpp"

#include <algorithm>

namespace clupy::master {

LabelSets::Id LabelSets::acquire(Labels labels) {
  if (labels.empty()) return kNone;
  std::sort(labels.begin(), labels.end());
  auto found = by_labels_.find(labels);
  if (found != by_labels_.end()) {
    ++entries_[found->second - 1].references;
    return found->second;
  }
  Id id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    entries_.emplace_back();
    id = static_cast<Id>(entries_.size());
  }
  Entry& entry = entries_[id - 1];
  entry.labels = labels;
  entry.references = 1;
  by_labels_.emplace(std::move(labels), id);
  return id;
}

void LabelSets::release(Id id) {
  if (id == kNone) return;
  Entry& entry = entries_[id - 1];
  if (--entry.references > 0) return;
  by_labels_.erase(entry.labels);
  entry.labels = Labels();
  free_.push_back(id);
}

const Labels& LabelSets::get(Id id) const { return id == kNone ? none_ : entries_[id - 1].labels; }

}  // namespace clupy::master
