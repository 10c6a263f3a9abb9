#include "master/slot_table.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace clupy::master {
namespace {

TEST(SlotTableTest, IdsAreNeverZeroAndFindTheirValues) {
  SlotTable<std::string> table;
  auto [a, va] = table.emplace();
  va = "a";
  auto [b, vb] = table.emplace();
  vb = "b";
  EXPECT_NE(a, 0u);
  EXPECT_NE(b, 0u);
  EXPECT_NE(a, b);
  ASSERT_NE(table.find(a), nullptr);
  EXPECT_EQ(*table.find(a), "a");
  EXPECT_EQ(*table.find(b), "b");
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(table.find(0), nullptr);
}

TEST(SlotTableTest, AnErasedIdMissesTheSlotsNextOccupant) {
  SlotTable<std::string> table;
  auto [old_id, old_value] = table.emplace();
  old_value = "old";
  EXPECT_TRUE(table.erase(old_id));
  EXPECT_FALSE(table.erase(old_id));
  auto [new_id, new_value] = table.emplace();
  new_value = "new";
  EXPECT_EQ(static_cast<std::uint32_t>(new_id), static_cast<std::uint32_t>(old_id));  // same slot
  EXPECT_NE(new_id, old_id);
  EXPECT_EQ(table.find(old_id), nullptr);
  EXPECT_EQ(*table.find(new_id), "new");
}

TEST(SlotTableTest, ErasingReleasesTheValuesMemory) {
  SlotTable<std::string> table;
  auto [id, value] = table.emplace();
  value.assign(1000, 'x');
  table.erase(id);
  auto [next, reused] = table.emplace();
  EXPECT_TRUE(reused.empty());
  EXPECT_LT(reused.capacity(), 1000u);  // rebuilt, not assigned: the buffer went back
  (void)next;
}

TEST(SlotTableTest, GrowsByChunksWithStableAddresses) {
  SlotTable<int> table;
  std::vector<std::pair<SlotTable<int>::Id, int*>> live;
  for (int i = 0; i < 10000; ++i) {
    auto [id, value] = table.emplace();
    value = i;
    live.emplace_back(id, &value);
  }
  for (int i = 0; i < 10000; ++i) {
    ASSERT_EQ(table.find(live[i].first), live[i].second);
    ASSERT_EQ(*live[i].second, i);
  }
  for (int i = 0; i < 10000; i += 2) table.erase(live[i].first);
  EXPECT_EQ(table.size(), 5000u);
  std::size_t seen = 0;
  table.for_each([&](SlotTable<int>::Id id, int& value) {
    EXPECT_EQ(value % 2, 1);
    EXPECT_EQ(table.find(id), &value);
    ++seen;
  });
  EXPECT_EQ(seen, 5000u);
  const std::size_t capacity = table.capacity();
  for (int i = 0; i < 5000; ++i) table.emplace();
  EXPECT_EQ(table.capacity(), capacity);  // freed slots are used before new ones
}

TEST(SlotTableTest, AnEmptiedTableGivesBackItsBurstAndStillRefusesOldIds) {
  SlotTable<int> table;
  std::vector<SlotTable<int>::Id> burst;
  for (int i = 0; i < 10000; ++i) burst.push_back(table.emplace().first);
  const std::size_t one_chunk = table.capacity() / 3;  // 10,000 slots took three chunks
  for (auto id : burst) table.erase(id);
  EXPECT_EQ(table.capacity(), one_chunk);
  std::vector<SlotTable<int>::Id> next;
  for (int i = 0; i < 10000; ++i) {
    auto [id, value] = table.emplace();
    value = i;
    next.push_back(id);
  }
  for (auto id : burst) EXPECT_EQ(table.find(id), nullptr);  // also in the chunks made anew
  for (int i = 0; i < 10000; ++i) ASSERT_EQ(*table.find(next[i]), i);
}

}  // namespace
}  // namespace clupy::master
