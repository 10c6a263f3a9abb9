// A table of values addressed by 64-bit ids, stored in chunks of slots: no allocation per value,
// addresses stable while a value lives, freed slots reused. An id names a slot and the slot's
// generation, so an id whose value was erased never finds the slot's next occupant (the
// scheduler relies on this: a late result of a task that was rerun or cancelled must miss).
// When the table empties after a burst it gives back every chunk but the first.
//
// Not thread-safe. Ids are never 0 (0 means "no task" on the wire).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace clupy::master {

template <class T>
class SlotTable {
 public:
  using Id = std::uint64_t;

  SlotTable() = default;
  SlotTable(const SlotTable&) = delete;
  SlotTable& operator=(const SlotTable&) = delete;

  // Stores a default-constructed value; returns its id and the value to fill in.
  std::pair<Id, T&> emplace() {
    if (free_head_ == kNone) grow();
    const std::uint32_t index = free_head_;
    Slot& slot = slot_at(index);
    free_head_ = slot.next_free;
    slot.next_free = kInUse;
    ++size_;
    return {make_id(index, slot.generation), slot.value};
  }

  // The value of a live id, or nullptr when the id was erased (or never issued).
  T* find(Id id) {
    const auto index = static_cast<std::uint32_t>(id);
    if (index >= capacity()) return nullptr;
    Slot& slot = slot_at(index);
    if (slot.next_free != kInUse || slot.generation != static_cast<std::uint32_t>(id >> 32))
      return nullptr;
    return &slot.value;
  }
  const T* find(Id id) const { return const_cast<SlotTable*>(this)->find(id); }

  // Destroys the value (its memory goes back at once) and frees the slot. False for an id that
  // is not live.
  bool erase(Id id) {
    T* value = find(id);
    if (value == nullptr) return false;
    const auto index = static_cast<std::uint32_t>(id);
    Slot& slot = slot_at(index);
    // Destroyed and rebuilt, not assigned: a std::string assigned an empty one keeps its buffer.
    std::destroy_at(&slot.value);
    std::construct_at(&slot.value);
    // Generation 0 is never issued, so no id is 0.
    if (++slot.generation == 0) slot.generation = 1;
    fresh_generation_ = std::max(fresh_generation_, slot.generation);
    slot.next_free = free_head_;
    free_head_ = index;
    if (--size_ == 0 && chunks_.size() > 1) keep_first_chunk_only();
    return true;
  }

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Slots allocated (live or free).
  std::size_t capacity() const { return chunks_.size() * kChunkSlots; }

  // Calls f(id, value) for every live value, in slot order.
  template <class F>
  void for_each(F&& f) {
    for (std::uint32_t index = 0; index < capacity(); ++index) {
      Slot& slot = slot_at(index);
      if (slot.next_free == kInUse) f(make_id(index, slot.generation), slot.value);
    }
  }

 private:
  // 4096 slots per chunk: big enough that the chunk list stays short, small enough that an idle
  // master does not hold much.
  static constexpr std::uint32_t kChunkSlots = 4096;
  static constexpr std::uint32_t kNone = UINT32_MAX;
  static constexpr std::uint32_t kInUse = UINT32_MAX - 1;

  struct Slot {
    T value{};
    std::uint32_t generation = 1;
    std::uint32_t next_free = kNone;  // kInUse while the slot holds a value
  };

  static Id make_id(std::uint32_t index, std::uint32_t generation) {
    return (Id{generation} << 32) | index;
  }
  Slot& slot_at(std::uint32_t index) { return chunks_[index / kChunkSlots][index % kChunkSlots]; }
  void grow() {
    const auto first = static_cast<std::uint32_t>(capacity());
    chunks_.push_back(std::make_unique<Slot[]>(kChunkSlots));
    // Free list in increasing order, so ids of a fresh table follow submission order. A new
    // slot starts past every generation issued so far: a chunk given back may have issued it.
    for (std::uint32_t i = kChunkSlots; i-- > 0;) {
      chunks_.back()[i].generation = fresh_generation_;
      chunks_.back()[i].next_free = free_head_;
      free_head_ = first + i;
    }
  }
  void keep_first_chunk_only() {
    chunks_.resize(1);
    free_head_ = kNone;
    for (std::uint32_t i = kChunkSlots; i-- > 0;) {
      chunks_[0][i].next_free = free_head_;
      free_head_ = i;
    }
  }

  std::vector<std::unique_ptr<Slot[]>> chunks_;
  std::uint32_t free_head_ = kNone;
  std::size_t size_ = 0;
  std::uint32_t fresh_generation_ = 1;  // the highest generation a slot was given back with
};

}  // namespace clupy::master
