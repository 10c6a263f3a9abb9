#include "server/result_release.hpp"

#include <gtest/gtest.h>

namespace clupy::server {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

class ResultReleaseTest : public ::testing::Test {
 protected:
  base::ManualClock clock_;
  ResultRelease release_{clock_, milliseconds(1), 512};
};

TEST_F(ResultReleaseTest, ResultsWaitWhileMoreTasksRunThanResultsAreGathered) {
  const auto first = clock_.now();
  const auto due = release_.due(1, 8);
  ASSERT_TRUE(due.has_value());
  EXPECT_EQ(*due, first + milliseconds(1));
  clock_.advance(microseconds(300));
  // More results join the batch; it stays due when its first result is a millisecond old.
  const auto later = release_.due(3, 6);
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(*later, first + milliseconds(1));
}

TEST_F(ResultReleaseTest, ABatchLeavesWhenItIsAsLargeAsWhatStillRuns) {
  ASSERT_TRUE(release_.due(3, 8).has_value());
  EXPECT_FALSE(release_.due(4, 4).has_value());
  EXPECT_FALSE(release_.due(5, 4).has_value());
}

TEST_F(ResultReleaseTest, ABatchLeavesAtOnceWhenNothingElseRuns) {
  EXPECT_FALSE(release_.due(1, 0).has_value());
}

TEST_F(ResultReleaseTest, ABatchLeavesAtItsLimitHoweverMuchStillRuns) {
  EXPECT_TRUE(release_.due(511, 5000).has_value());
  EXPECT_FALSE(release_.due(512, 5000).has_value());
}

TEST_F(ResultReleaseTest, ABatchLeavesOnceItsFirstResultHasWaitedTheLongestDelay) {
  ASSERT_TRUE(release_.due(1, 100).has_value());
  clock_.advance(microseconds(999));
  EXPECT_TRUE(release_.due(2, 100).has_value());
  clock_.advance(microseconds(1));
  EXPECT_FALSE(release_.due(2, 100).has_value());
}

TEST_F(ResultReleaseTest, AfterABatchLeftTheNextOneWaitsFromItsOwnFirstResult) {
  ASSERT_TRUE(release_.due(1, 100).has_value());
  clock_.advance(milliseconds(5));
  ASSERT_FALSE(release_.due(1, 100).has_value());
  release_.sent();
  const auto next = release_.due(1, 100);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(*next, clock_.now() + milliseconds(1));
}

TEST_F(ResultReleaseTest, WithoutSentTheBatchStaysOverdue) {
  // The contract the server relies on: a batch not reported sent keeps its first result's time.
  ASSERT_TRUE(release_.due(1, 100).has_value());
  clock_.advance(milliseconds(2));
  EXPECT_FALSE(release_.due(1, 100).has_value());
  EXPECT_FALSE(release_.due(2, 100).has_value());
}

}  // namespace
}  // namespace clupy::server
