// The worker's result batching, driven by a made-up clock and read back through a socket pair
// as the server reads it: when held results leave, in which order, and what leaves at once.
#include "worker/result_batcher.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "clupy.pb.h"
#include "common/frame.hpp"

namespace clupy::worker {
namespace {

using std::chrono::microseconds;

class ResultBatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds_), 0);
  }
  void TearDown() override {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }

  // `batching`, `attachments` as the worker loop passes them; no flusher thread: the test calls
  // flush_if_due itself, so the clock is read on this thread only.
  ResultBatcher make(bool batching, bool attachments = false) {
    return ResultBatcher(fds_[0], batching, attachments, clock_, /*flusher=*/false);
  }

  bool add(ResultBatcher& batcher, std::uint64_t task_id, std::size_t outcome_size = 16) {
    wire::Envelope done;
    done.mutable_task_done()->set_task_id(task_id);
    done.mutable_task_done()->set_outcome(std::string(outcome_size, 'r'));
    return batcher.add(done);
  }

  // The task ids of every TaskDone written so far (waits for none), and each outcome's size.
  std::vector<std::uint64_t> written(std::vector<std::size_t>* sizes = nullptr) {
    std::vector<std::uint64_t> ids;
    while (true) {
      wire::Envelope message;
      const auto status = decoder_.next(message);
      if (status == common::FrameDecoder::Status::kFrame) {
        ids.push_back(message.task_done().task_id());
        if (sizes) sizes->push_back(message.task_done().outcome().size());
        continue;
      }
      EXPECT_EQ(status, common::FrameDecoder::Status::kNeedMore) << decoder_.error();
      pollfd p{fds_[1], POLLIN, 0};
      if (::poll(&p, 1, 0) <= 0) return ids;
      const std::span<char> space = decoder_.prepare(1 << 16);
      const ssize_t n = ::read(fds_[1], space.data(), space.size());
      if (n <= 0) return ids;
      decoder_.commit(static_cast<std::size_t>(n));
    }
  }

  int fds_[2] = {-1, -1};
  base::ManualClock clock_;
  common::FrameDecoder decoder_{64u << 20};
};

TEST_F(ResultBatcherTest, ResultsAreHeldUntilTheOldestHasWaitedTheLongestDelay) {
  ResultBatcher batcher = make(true);
  ASSERT_TRUE(add(batcher, 1));
  clock_.advance(microseconds(600));
  ASSERT_TRUE(add(batcher, 2));
  ASSERT_TRUE(batcher.flush_if_due());
  EXPECT_TRUE(written().empty());
  clock_.advance(microseconds(399));
  ASSERT_TRUE(batcher.flush_if_due());
  EXPECT_TRUE(written().empty());
  // The first result is now a millisecond old: both leave, in order, in one write.
  clock_.advance(microseconds(1));
  ASSERT_TRUE(batcher.flush_if_due());
  EXPECT_EQ(written(), (std::vector<std::uint64_t>{1, 2}));
}

TEST_F(ResultBatcherTest, TheNextBatchIsTimedFromItsOwnFirstResult) {
  ResultBatcher batcher = make(true);
  ASSERT_TRUE(add(batcher, 1));
  clock_.advance(ResultBatcher::kMaxResultDelay * 5);
  ASSERT_TRUE(batcher.flush_if_due());
  EXPECT_EQ(written(), (std::vector<std::uint64_t>{1}));
  ASSERT_TRUE(add(batcher, 2));
  ASSERT_TRUE(batcher.flush_if_due());
  EXPECT_TRUE(written().empty());
  clock_.advance(ResultBatcher::kMaxResultDelay);
  ASSERT_TRUE(batcher.flush_if_due());
  EXPECT_EQ(written(), (std::vector<std::uint64_t>{2}));
}

TEST_F(ResultBatcherTest, FlushWritesEverythingHeldWhateverTheClockSays) {
  ResultBatcher batcher = make(true);
  ASSERT_TRUE(add(batcher, 7));
  ASSERT_TRUE(add(batcher, 8));
  ASSERT_TRUE(batcher.flush());
  EXPECT_EQ(written(), (std::vector<std::uint64_t>{7, 8}));
}

TEST_F(ResultBatcherTest, HeldBytesPastTheLimitLeaveAtOnce) {
  ResultBatcher batcher = make(true);
  ASSERT_TRUE(add(batcher, 1, 1000));
  EXPECT_TRUE(written().empty());
  // Without attachments a large outcome is serialized into the batch: past kMaxHeldBytes.
  ASSERT_TRUE(add(batcher, 2, ResultBatcher::kMaxHeldBytes));
  EXPECT_EQ(written(), (std::vector<std::uint64_t>{1, 2}));
}

TEST_F(ResultBatcherTest, WithoutBatchingEachResultLeavesAtOnce) {
  ResultBatcher batcher = make(false);
  ASSERT_TRUE(add(batcher, 1));
  EXPECT_EQ(written(), (std::vector<std::uint64_t>{1}));
  ASSERT_TRUE(add(batcher, 2));
  EXPECT_EQ(written(), (std::vector<std::uint64_t>{2}));
}

TEST_F(ResultBatcherTest, ALargeOutcomeLeavesAsAnAttachmentAfterTheResultsHeldBeforeIt) {
  ResultBatcher batcher = make(true, /*attachments=*/true);
  ASSERT_TRUE(add(batcher, 1));
  const std::size_t large = common::kAttachmentThreshold * 3;
  ASSERT_TRUE(add(batcher, 2, large));
  std::vector<std::size_t> sizes;
  EXPECT_EQ(written(&sizes), (std::vector<std::uint64_t>{1, 2}));
  // The attachment is put back into the outcome by the decoder, whole.
  EXPECT_EQ(sizes, (std::vector<std::size_t>{16, large}));
}

TEST_F(ResultBatcherTest, AGoneServerIsReportedAndNothingMoreIsWritten) {
  ResultBatcher batcher = make(false);
  ::signal(SIGPIPE, SIG_IGN);  // the worker's write fails with EPIPE instead of ending the test
  ::close(fds_[1]);
  fds_[1] = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);  // TearDown closes it
  EXPECT_FALSE(add(batcher, 1));
  EXPECT_FALSE(batcher.flush());
}

}  // namespace
}  // namespace clupy::worker
