#include "server/result_holder.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include "common/log.hpp"

namespace clupy::server {

namespace fs = std::filesystem;

namespace {
auto log() { return common::logger("server"); }
}  // namespace

ResultHolder::ResultHolder(std::string spill_dir, std::size_t memory_limit)
    : spill_dir_(std::move(spill_dir)), memory_limit_(memory_limit) {
  remove_spill_dir();  // a crashed run's leftovers: nothing refers to them any more
}

ResultHolder::~ResultHolder() { remove_spill_dir(); }

void ResultHolder::remove_spill_dir() {
  std::error_code ec;
  fs::remove_all(spill_dir_, ec);
  spill_dir_made_ = false;
}

std::string ResultHolder::file_of(std::uint64_t id) const {
  return spill_dir_ + "/" + std::to_string(id);
}

std::uint64_t ResultHolder::put(std::string outcome) {
  const std::uint64_t id = next_id_++;
  Entry& entry = entries_[id];
  entry.size = outcome.size();
  entry.bytes = std::move(outcome);
  memory_order_.push_back(id);
  entry.in_memory = std::prev(memory_order_.end());
  ++counters_.held;
  ++counters_.results_kept_total;
  counters_.bytes_held += entry.size;
  counters_.bytes_in_memory += entry.size;
  spill_over_limit();
  return id;
}

void ResultHolder::spill_over_limit() {
  while (counters_.bytes_in_memory > memory_limit_ && !memory_order_.empty()) {
    const std::uint64_t id = memory_order_.front();
    Entry& entry = entries_.at(id);
    std::error_code ec;
    if (!spill_dir_made_) {
      fs::create_directories(spill_dir_, ec);
      spill_dir_made_ = !ec;
    }
    std::ofstream out(file_of(id), std::ios::binary | std::ios::trunc);
    out.write(entry.bytes.data(), static_cast<std::streamsize>(entry.bytes.size()));
    out.close();
    if (!out) {
      // A full or unwritable disk: the result stays in memory rather than being lost.
      log()->warn("cannot spill a held result to {}: keeping it in memory", file_of(id));
      return;
    }
    memory_order_.pop_front();
    counters_.bytes_in_memory -= entry.size;
    counters_.bytes_spilled += entry.size;
    counters_.bytes_spilled_total += entry.size;
    std::string().swap(entry.bytes);
    entry.spilled = true;
  }
}

std::optional<std::string> ResultHolder::get(std::uint64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  if (!it->second.spilled) return it->second.bytes;
  std::ifstream in(file_of(id), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) return std::nullopt;
  if (bytes.size() != it->second.size) return std::nullopt;
  return bytes;
}

bool ResultHolder::free(std::uint64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  Entry& entry = it->second;
  if (entry.spilled) {
    std::error_code ec;
    fs::remove(file_of(id), ec);
    counters_.bytes_spilled -= entry.size;
  } else {
    memory_order_.erase(entry.in_memory);
    counters_.bytes_in_memory -= entry.size;
  }
  counters_.bytes_held -= entry.size;
  --counters_.held;
  ++counters_.results_freed_total;
  entries_.erase(it);
  return true;
}

void ResultHolder::clear() {
  counters_.results_freed_total += entries_.size();
  entries_.clear();
  memory_order_.clear();
  counters_.held = 0;
  counters_.bytes_held = 0;
  counters_.bytes_in_memory = 0;
  counters_.bytes_spilled = 0;
  remove_spill_dir();
}

}  // namespace clupy::server
