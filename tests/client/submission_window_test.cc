// The client's submission window (client/submission_window.hpp): room, the slice that must be
// free before a blocked submitter wakes, giving up, and a real blocked thread woken by results.
#include "client/submission_window.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace clupy::client {
namespace {

// Waits until `condition()` holds, for at most 10 s.
template <class Condition>
::testing::AssertionResult eventually(Condition condition, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline)
      return ::testing::AssertionFailure() << "timed out waiting until " << what;
    std::this_thread::yield();
  }
  return ::testing::AssertionSuccess();
}

TEST(SubmissionWindowTest, RoomUntilTheWindowIsFull) {
  SubmissionWindow window;
  window.set_size(3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(window.has_room());
    window.add();
  }
  EXPECT_FALSE(window.has_room());
  EXPECT_EQ(window.outstanding(), 3u);
  window.resolve();
  EXPECT_TRUE(window.has_room());
}

TEST(SubmissionWindowTest, SizeIsAtLeastOne) {
  SubmissionWindow window;
  window.set_size(0);
  EXPECT_EQ(window.size(), 1u);
  EXPECT_EQ(window.slack(), 1u);
}

TEST(SubmissionWindowTest, LargeWindowWakesSubmittersOnlyOnceASixteenthIsFree) {
  SubmissionWindow window;
  window.set_size(65536);
  EXPECT_EQ(window.slack(), 4096u);
  window.set_size(1000);
  EXPECT_EQ(window.slack(), 1u);  // a small window: every slot counts
}

// A real submitter blocked on a full window, woken by a batch of results that frees a slice.
TEST(SubmissionWindowTest, BlockedSubmitterWakesWhenASliceIsFreed) {
  std::mutex mu;
  SubmissionWindow window;
  window.set_size(2048);  // slack 128
  for (int i = 0; i < 2048; ++i) window.add();
  std::atomic<bool> submitted{false};
  std::thread submitter([&] {
    std::unique_lock lock(mu);
    window.wait_for_room(lock, [] { return false; });
    window.add();
    submitted = true;
  });
  ASSERT_TRUE(eventually(
      [&] {
        std::lock_guard lock(mu);
        return window.waiters() == 1;
      },
      "the submitter blocks"));
  {
    // One result frees a slot, but not a slice: the submitter is not woken for it.
    std::lock_guard lock(mu);
    window.resolve();
    EXPECT_FALSE(window.settle());
    for (int i = 0; i < 126; ++i) window.resolve();
    EXPECT_FALSE(window.settle());
    window.resolve();
    EXPECT_TRUE(window.settle());  // 128 free now
  }
  ASSERT_TRUE(eventually([&] { return submitted.load(); }, "the submitter is woken"));
  submitter.join();
  std::lock_guard lock(mu);
  EXPECT_EQ(window.outstanding(), 2048u - 128u + 1u);
  EXPECT_EQ(window.waiters(), 0u);
}

TEST(SubmissionWindowTest, BlockedSubmitterGivesUpWhenTheConnectionFails) {
  std::mutex mu;
  SubmissionWindow window;
  window.set_size(1);
  window.add();
  bool connected = true;
  std::atomic<bool> returned{false};
  std::thread submitter([&] {
    std::unique_lock lock(mu);
    window.wait_for_room(lock, [&] { return !connected; });
    returned = true;
  });
  ASSERT_TRUE(eventually(
      [&] {
        std::lock_guard lock(mu);
        return window.waiters() == 1;
      },
      "the submitter blocks"));
  {
    std::lock_guard lock(mu);
    connected = false;
    window.clear();
  }
  window.wake_all();
  ASSERT_TRUE(eventually([&] { return returned.load(); }, "the submitter gives up"));
  submitter.join();
  EXPECT_EQ(window.outstanding(), 0u);
}

TEST(SubmissionWindowTest, CancelledHeldTaskWakesASubmitterAtOnce) {
  std::mutex mu;
  SubmissionWindow window;
  window.set_size(4096);  // slack 256: a settle() after one result would not wake it
  for (int i = 0; i < 4096; ++i) window.add();
  std::atomic<bool> submitted{false};
  std::thread submitter([&] {
    std::unique_lock lock(mu);
    window.wait_for_room(lock, [] { return false; });
    submitted = true;
  });
  ASSERT_TRUE(eventually(
      [&] {
        std::lock_guard lock(mu);
        return window.waiters() == 1;
      },
      "the submitter blocks"));
  {
    std::lock_guard lock(mu);
    window.resolve_now();
  }
  ASSERT_TRUE(eventually([&] { return submitted.load(); }, "the submitter is woken"));
  submitter.join();
}

}  // namespace
}  // namespace clupy::client
