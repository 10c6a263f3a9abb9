// The call arena's ring of places and a worker's measured pace.
#include "worker/call_ring.hpp"

#include <gtest/gtest.h>

#include "worker/dispatch.hpp"

namespace clupy::worker {
namespace {

TEST(WorkerCallRingTest, CallsArePlacedOneAfterAnother) {
  CallRing ring(100);
  EXPECT_EQ(ring.place(1, 30), 0u);
  EXPECT_EQ(ring.place(2, 30), 30u);
  EXPECT_EQ(ring.place(3, 30), 60u);
  EXPECT_EQ(ring.place(4, 30), std::nullopt);  // 10 bytes left at the end, none at the front
}

TEST(WorkerCallRingTest, ReleasedRoomIsReusedAndNoCallWraps) {
  CallRing ring(100);
  ASSERT_EQ(ring.place(1, 40), 0u);
  ASSERT_EQ(ring.place(2, 40), 40u);
  ring.release(1);
  // 20 bytes at the end are skipped: the call goes to the front, where 1 was.
  EXPECT_EQ(ring.place(3, 30), 0u);
  EXPECT_EQ(ring.place(4, 30), std::nullopt);
}

TEST(WorkerCallRingTest, OnlyTheOldestCallIsReleased) {
  CallRing ring(100);
  ASSERT_EQ(ring.place(1, 50), 0u);
  ASSERT_EQ(ring.place(2, 50), 50u);
  ring.release(2);  // not the oldest: a task without a call was reported in between
  EXPECT_EQ(ring.place(3, 10), std::nullopt);
  ring.release(1);
  EXPECT_EQ(ring.place(3, 10), 0u);
}

TEST(WorkerCallRingTest, EmptyRingStartsAgainAtTheFront) {
  CallRing ring(100);
  ASSERT_EQ(ring.place(1, 30), 0u);
  ASSERT_EQ(ring.place(2, 30), 30u);
  ring.release(1);
  ring.release(2);
  EXPECT_EQ(ring.place(3, 30), 0u);
}

TEST(WorkerCallRingTest, CallLargerThanTheArenaHasNoPlace) {
  CallRing ring(100);
  EXPECT_EQ(ring.place(1, 101), std::nullopt);
  EXPECT_EQ(ring.place(2, 100), 0u);
}

TEST(WorkerTaskPaceTest, UnmeasuredWorkerHoldsTwoTasks) {
  TaskPace pace;
  EXPECT_EQ(pace.pipeline_limit(), 2u);
}

TEST(WorkerTaskPaceTest, BusyTimeOnlyIsMeasured) {
  TaskPace pace;
  const Clock::time_point t0{};
  pace.front_started(t0);
  pace.count_result(t0 + std::chrono::milliseconds(1));  // the first sample counts at once
  EXPECT_DOUBLE_EQ(pace.seconds_per_task(), 0.001);
  EXPECT_EQ(pace.pipeline_limit(), 3u);
  // An idle second, then tasks of 70 us: the window closes after 64 results.
  Clock::time_point t = t0 + std::chrono::seconds(1);
  for (int i = 0; i < 64; ++i) {
    pace.front_started(t);
    t += std::chrono::microseconds(70);
    pace.count_result(t);
  }
  EXPECT_NEAR(pace.seconds_per_task(), 70e-6, 1e-12);
  EXPECT_EQ(pace.pipeline_limit(), 1u + 28u);  // 2 ms / 70 us, rounded down
}

TEST(WorkerTaskPaceTest, LongTasksCloseTheWindowEarly) {
  TaskPace pace;
  Clock::time_point t{};
  pace.front_started(t);
  pace.count_result(t += std::chrono::microseconds(10));
  EXPECT_EQ(pace.pipeline_limit(), kPipelineDepth);
  pace.front_started(t);
  pace.count_result(t += std::chrono::milliseconds(150));  // past kRateWindow: measured now
  EXPECT_DOUBLE_EQ(pace.seconds_per_task(), 0.15);
  EXPECT_EQ(pace.pipeline_limit(), 1u);
}

}  // namespace
}  // namespace clupy::worker
