// The Dispatcher's choice of worker: images, slots, the pipeline by measured pace, making room,
// environments, cancellation, timeouts, draining. Fake processes, a made-up clock.
#include "worker/dispatch.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include "fake_workers.hpp"

namespace clupy::worker::fakes {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class WorkerDispatchTest : public DispatcherFixture {};
class WorkerDispatchTwoSlotsTest : public DispatcherFixture {
 protected:
  WorkerDispatchTwoSlotsTest() : DispatcherFixture(2) {}
};

TEST_F(WorkerDispatchTest, TasksWaitUntilTheirImageIsReady) {
  dispatcher_.add(task(1), now_);
  EXPECT_THAT(outbox_.spawned, IsEmpty());
  EXPECT_EQ(dispatcher_.unfinished(), 1u);
  dispatcher_.image_ready(kImageA, now_);
  ASSERT_EQ(outbox_.spawned.size(), 1u);
  EXPECT_THAT(worker(0).sent, ElementsAre(1u));
  EXPECT_THAT(outbox_.fronts[&worker(0)], ElementsAre(1u));
}

TEST_F(WorkerDispatchTest, AssignmentWithoutImageDigestFailsAsProtocolError) {
  dispatcher_.add(task(1, "short"), now_);
  auto reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(kind_of(reports[0]), FailureKind::kProtocol);
  EXPECT_EQ(reports[0].failure().server(), "server-1");
  EXPECT_EQ(dispatcher_.unfinished(), 0u);
}

TEST_F(WorkerDispatchTest, UnavailableImageFailsItsWaitingTasksOnly) {
  dispatcher_.add(task(1, kImageA), now_);
  dispatcher_.add(task(2, kImageB), now_);
  dispatcher_.image_failed(kImageA, "no such image");
  auto reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].task_id(), 1u);
  EXPECT_EQ(kind_of(reports[0]), FailureKind::kUnavailable);
  EXPECT_NE(reports[0].failure().message().find("no such image"), std::string::npos);
  EXPECT_EQ(dispatcher_.waiting(), 1u);
}

TEST_F(WorkerDispatchTest, UnmeasuredWorkerHoldsTwoTasks) {
  add({1, 2, 3, 4});
  ASSERT_EQ(outbox_.spawned.size(), 1u);
  EXPECT_THAT(worker(0).sent, ElementsAre(1u, 2u));
  EXPECT_EQ(dispatcher_.waiting(), 2u);
  EXPECT_EQ(dispatcher_.busy(), 1u);
  EXPECT_EQ(dispatcher_.unfinished(), 4u);
}

TEST_F(WorkerDispatchTest, ResultIsReportedAndTheNextTaskFollows) {
  add({1, 2, 3});
  now_ += std::chrono::milliseconds(50);
  done(worker(0), 1);
  auto reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].task_id(), 1u);
  EXPECT_EQ(reports[0].outcome(), "out-1");
  EXPECT_EQ(reports[0].server_id(), "server-1");
  // Tasks of 50 ms: nothing more is queued behind the running one.
  EXPECT_THAT(worker(0).sent, ElementsAre(1u, 2u));
  EXPECT_THAT(outbox_.fronts[&worker(0)], ElementsAre(1u, 2u));
  done(worker(0), 2);
  EXPECT_THAT(worker(0).sent, ElementsAre(1u, 2u, 3u));
  done(worker(0), 3);
  // 0: it held nothing for a moment (its timeout disarmed) before 3 was sent.
  EXPECT_THAT(outbox_.fronts[&worker(0)], ElementsAre(1u, 2u, 0u, 3u, 0u));
  EXPECT_EQ(dispatcher_.busy(), 0u);
  EXPECT_EQ(dispatcher_.counters().images.at(kImageA).tasks_run, 3u);
}

TEST_F(WorkerDispatchTest, FastTasksDeepenThePipelineAndSlowOnesShortenIt) {
  std::vector<std::uint64_t> ids;
  for (std::uint64_t id = 1; id <= 300; ++id) ids.push_back(id);
  add(ids);
  // 10 us per task: 2 ms of queued work is more than the deepest pipeline.
  now_ += std::chrono::microseconds(10);
  done(worker(0), 1);
  EXPECT_EQ(queue(0).size(), kPipelineDepth);
  // Tasks of 1 ms: measured once a window of kRateWindowTasks results is full (task 65), after
  // which the worker gets no task until it holds fewer than 1 + 2 ms / 1 ms.
  for (std::uint64_t id = 2; id <= 65; ++id) {
    now_ += std::chrono::milliseconds(1);
    done(worker(0), id);
  }
  const std::size_t sent = worker(0).sent.size();
  EXPECT_EQ(sent, 1 + kPipelineDepth + 63);
  for (std::uint64_t id = 66; id <= 93; ++id) {
    now_ += std::chrono::milliseconds(1);
    done(worker(0), id);
  }
  EXPECT_EQ(worker(0).sent.size(), sent);
  EXPECT_EQ(queue(0).size(), 3u);
  now_ += std::chrono::milliseconds(1);
  done(worker(0), 94);
  EXPECT_EQ(worker(0).sent.size(), sent + 1);
  EXPECT_EQ(queue(0).size(), 3u);
}

TEST_F(WorkerDispatchTwoSlotsTest, NewWorkerRatherThanQueueingBehindABusyOne) {
  add({1, 2});
  ASSERT_EQ(outbox_.spawned.size(), 2u);
  EXPECT_THAT(worker(0).sent, ElementsAre(1u));
  EXPECT_THAT(worker(1).sent, ElementsAre(2u));
  add({3, 4});
  EXPECT_THAT(worker(0).sent, ElementsAre(1u, 3u));
  EXPECT_THAT(worker(1).sent, ElementsAre(2u, 4u));
}

TEST_F(WorkerDispatchTwoSlotsTest, IdleWorkerIsReused) {
  add({1});
  done(worker(0), 1);
  add({2});
  EXPECT_EQ(outbox_.spawned.size(), 1u);
  EXPECT_THAT(worker(0).sent, ElementsAre(1u, 2u));
}

TEST_F(WorkerDispatchTest, SpawnFailureLeavesTheTaskWaiting) {
  outbox_.refuse_spawn = true;
  add({1});
  EXPECT_EQ(dispatcher_.waiting(), 1u);
  outbox_.refuse_spawn = false;
  dispatcher_.dispatch(now_);
  ASSERT_EQ(outbox_.spawned.size(), 1u);
  EXPECT_THAT(worker(0).sent, ElementsAre(1u));
}

TEST_F(WorkerDispatchTest, IdleWorkerOfAnotherProgramGivesWayWhenSlotsAreFull) {
  add({1}, kImageA);
  done(worker(0), 1);
  add({2}, kImageB);
  EXPECT_TRUE(worker(0).retired);
  EXPECT_EQ(outbox_.spawned.size(), 1u);  // not before the retired one is gone
  dies(worker(0), killed_by(SIGKILL));
  ASSERT_EQ(outbox_.spawned.size(), 2u);
  EXPECT_EQ(worker(1).image, kImageB);
  EXPECT_THAT(worker(1).sent, ElementsAre(2u));
  EXPECT_THAT(outbox_.take_reports(), ::testing::SizeIs(1));  // task 1's result only
  EXPECT_EQ(dispatcher_.counters().workers_crashed, 0u);      // retired, not crashed
}

TEST_F(WorkerDispatchTwoSlotsTest, WorkersOfOneProgramAreKeptPerJobLibrarySet) {
  // Two jobs of the same program, one shipping libraries: a worker of one never runs the
  // other's task, and a start failure of one set leaves the other's tasks alone.
  dispatcher_.image_ready(kImageA, now_);
  wire::Assignment plain = task(1);
  wire::Assignment shipped = task(2);
  shipped.set_library_set("job-libs");
  dispatcher_.add(std::move(plain), now_);
  dispatcher_.add(std::move(shipped), now_);
  ASSERT_EQ(outbox_.spawned.size(), 2u);
  EXPECT_THAT(worker(0).sent, ElementsAre(1u));
  EXPECT_THAT(worker(1).sent, ElementsAre(2u));
  EXPECT_EQ(outbox_.library_sets, (std::vector<std::string>{"", "job-libs"}));
  WorkerExit cannot_load;
  cannot_load.known = true;
  cannot_load.exit_code = 127;
  cannot_load.early_stderr = "libonly_here.so.1: cannot open shared object file";
  dies(worker(1), cannot_load);
  auto reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].task_id(), 2u);
  wire::Assignment again = task(3);
  again.set_library_set("job-libs");
  dispatcher_.add(std::move(again), now_);  // fails at once: its set cannot start here
  dispatcher_.add(task(4), now_);           // runs: the plain set is not blamed
  reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].task_id(), 3u);
  EXPECT_NE(reports[0].failure().message().find("libonly_here.so.1"), std::string::npos);
  // A new worker of the plain set, rather than queueing behind the busy one.
  ASSERT_EQ(outbox_.spawned.size(), 3u);
  EXPECT_EQ(outbox_.library_sets.back(), "");
  EXPECT_THAT(worker(2).sent, ElementsAre(4u));
}

TEST_F(WorkerDispatchTest, BusyWorkerOfAnotherProgramDoesNotGiveWay) {
  add({1}, kImageA);
  add({2}, kImageB);
  EXPECT_FALSE(worker(0).retired);
  EXPECT_EQ(dispatcher_.waiting(), 1u);
  done(worker(0), 1);  // now idle: it gives way
  EXPECT_TRUE(worker(0).retired);
}

TEST_F(WorkerDispatchTwoSlotsTest, NewEnvironmentRetiresIdleWorkersAndBusyOnesTakeNoNewTasks) {
  add({1, 2});
  done(worker(1), 2);  // worker 1 idle, worker 0 busy
  dispatcher_.environment_changed(now_);
  EXPECT_TRUE(worker(1).retired);
  EXPECT_FALSE(worker(0).retired);
  add({3});
  // Worker 0 is of the old environment and worker 1 is on its way out: no slot is free.
  EXPECT_EQ(worker(0).sent.size(), 1u);
  dies(worker(1), killed_by(SIGKILL));
  ASSERT_EQ(outbox_.spawned.size(), 3u);
  EXPECT_THAT(worker(2).sent, ElementsAre(3u));
}

TEST_F(WorkerDispatchTest, UnexpectedMessageRetiresTheWorker) {
  add({1, 2});
  done(worker(0), 2);  // not its front task
  EXPECT_TRUE(worker(0).retired);
  EXPECT_THAT(outbox_.take_reports(), IsEmpty());
  add({3});
  EXPECT_EQ(outbox_.spawned.size(), 1u);  // the retired worker takes nothing
}

TEST_F(WorkerDispatchTest, CancelledWaitingTaskFailsAtOnce) {
  add({1, 2, 3});
  dispatcher_.cancel(3);
  auto reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].task_id(), 3u);
  EXPECT_EQ(kind_of(reports[0]), FailureKind::kCancelled);
  EXPECT_EQ(worker(0).kills, 0);
}

TEST_F(WorkerDispatchTest, CancelledQueuedTaskFailsAtOnceAndItsLateResultIsDropped) {
  add({1, 2});
  worker(0).page = 1;
  dispatcher_.cancel(2);
  auto reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(kind_of(reports[0]), FailureKind::kCancelled);
  EXPECT_EQ(worker(0).kills, 0);
  done(worker(0), 1);
  done(worker(0), 2);  // it ran anyway
  reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].task_id(), 1u);
}

TEST_F(WorkerDispatchTest, CancelledRunningTaskKillsItsWorkerAndFailsWhenItDies) {
  add({1, 2});
  worker(0).page = 1;
  dispatcher_.cancel(1);
  EXPECT_EQ(worker(0).kills, 1);
  EXPECT_THAT(outbox_.reports, IsEmpty());
  dies(worker(0), killed_by(SIGKILL));
  auto reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].task_id(), 1u);
  EXPECT_EQ(kind_of(reports[0]), FailureKind::kCancelled);
  EXPECT_EQ(dispatcher_.counters().workers_killed, 1u);
  // Task 2 runs on the next worker.
  ASSERT_EQ(outbox_.spawned.size(), 2u);
  EXPECT_THAT(worker(1).sent, ElementsAre(2u));
  EXPECT_EQ(dispatcher_.counters().workers_restarted, 1u);
}

TEST_F(WorkerDispatchTest, DeadlineKillsTheWorkerOfTheTimedOutTask) {
  dispatcher_.image_ready(kImageA, now_);
  dispatcher_.add(task(1, kImageA, 100), now_);
  worker(0).page = 1;
  EXPECT_EQ(dispatcher_.deadline_passed(worker(0), 1), Dispatcher::Deadline::kKilled);
  EXPECT_EQ(worker(0).kills, 1);
  dies(worker(0), killed_by(SIGKILL));
  auto reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(kind_of(reports[0]), FailureKind::kTimeout);
  EXPECT_EQ(reports[0].failure().signal(), SIGKILL);
  EXPECT_NE(reports[0].failure().message().find("100 ms"), std::string::npos);
}

TEST_F(WorkerDispatchTest, DeadlineOfAFinishedTaskWaitsForItsResult) {
  dispatcher_.image_ready(kImageA, now_);
  dispatcher_.add(task(1, kImageA, 100), now_);
  dispatcher_.add(task(2, kImageA), now_);
  worker(0).page = 2;  // 1 is done, its result on the way in the worker's batch
  EXPECT_EQ(dispatcher_.deadline_passed(worker(0), 1), Dispatcher::Deadline::kLookAgain);
  EXPECT_EQ(worker(0).kills, 0);
  done(worker(0), 1);
  EXPECT_EQ(dispatcher_.deadline_passed(worker(0), 1), Dispatcher::Deadline::kStale);
  EXPECT_EQ(worker(0).kills, 0);
}

TEST_F(WorkerDispatchTest, HandBackTakesOnlyTasksNoWorkerHolds) {
  add({1, 2, 3, 4});
  EXPECT_THAT(dispatcher_.hand_back_unstarted(), ElementsAre(3u, 4u));
  EXPECT_EQ(dispatcher_.unfinished(), 2u);
}

TEST_F(WorkerDispatchTest, AbandonedWorkersReportNothing) {
  add({1, 2, 3});
  worker(0).page = 1;
  dispatcher_.abandon_all();
  EXPECT_EQ(worker(0).kills, 1);
  EXPECT_EQ(dispatcher_.waiting(), 0u);
  dies(worker(0), killed_by(SIGKILL));
  EXPECT_THAT(outbox_.reports, IsEmpty());
  EXPECT_EQ(dispatcher_.unfinished(), 0u);
  EXPECT_EQ(dispatcher_.counters().workers_crashed, 0u);
}

TEST_F(WorkerDispatchTest, ShutdownStopsEveryWorkerAndDispatchesNothingMore) {
  add({1});
  dispatcher_.shutdown();
  EXPECT_TRUE(worker(0).stopped);
  EXPECT_EQ(dispatcher_.worker_count(), 0u);
  add({2});
  EXPECT_EQ(outbox_.spawned.size(), 1u);
}

}  // namespace
}  // namespace clupy::worker::fakes
