// Which task a worker's death is charged to, in every order of results and deaths: a death
// before any result, after part of a batch, with and without a progress page, two deaths, a
// result racing a death, a verdict (timeout, cancel) on a task that reported meanwhile, a
// program that cannot load. The charged task fails; every other task the worker held is rerun,
// in order, ahead of what waits.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include "fake_workers.hpp"
#include "worker/dispatch.hpp"

namespace clupy::worker::fakes {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class WorkerCrashBlameTest : public DispatcherFixture {
 protected:
  explicit WorkerCrashBlameTest(unsigned capacity = 1) : DispatcherFixture(capacity) {}
  // The one failure reported since the last call; fails the test unless there is exactly one.
  wire::TaskResult only_failure() {
    auto reports = outbox_.take_reports();
    EXPECT_EQ(reports.size(), 1u);
    if (reports.empty()) return {};
    EXPECT_TRUE(reports[0].has_failure());
    return reports[0];
  }
};
class WorkerCrashBlameTwoSlotsTest : public WorkerCrashBlameTest {
 protected:
  WorkerCrashBlameTwoSlotsTest() : WorkerCrashBlameTest(2) {}
};

TEST_F(WorkerCrashBlameTest, DeathBeforeAnyResultChargesTheTaskOnItsPage) {
  add({1, 2, 3});
  worker(0).page = 1;
  dies(worker(0), killed_by(SIGSEGV));
  auto failure = only_failure();
  EXPECT_EQ(failure.task_id(), 1u);
  EXPECT_EQ(kind_of(failure), FailureKind::kCrash);
  EXPECT_EQ(failure.failure().signal(), SIGSEGV);
  EXPECT_EQ(failure.failure().message(), "worker killed by signal 11 (SIGSEGV)");
  EXPECT_EQ(failure.failure().server(), "server-1");
  // 2 is rerun ahead of 3, which waited.
  ASSERT_EQ(outbox_.spawned.size(), 2u);
  EXPECT_THAT(worker(1).sent, ElementsAre(2u, 3u));
  EXPECT_EQ(dispatcher_.counters().workers_crashed, 1u);
  EXPECT_EQ(dispatcher_.counters().workers_restarted, 1u);
  EXPECT_EQ(dispatcher_.counters().images.at(kImageA).tasks_crashed, 1u);
}

TEST_F(WorkerCrashBlameTest, DeathBeforeItStartedATaskChargesTheFirst) {
  add({1, 2});
  worker(0).page = std::nullopt;  // a worker without a page (or one that named nothing yet)
  dies(worker(0), exited_with(3));
  auto failure = only_failure();
  EXPECT_EQ(failure.task_id(), 1u);
  EXPECT_EQ(failure.failure().exit_code(), 3);
  EXPECT_EQ(failure.failure().message(), "worker exited with code 3 while running the task");
  EXPECT_THAT(worker(1).sent, ElementsAre(2u));
}

TEST_F(WorkerCrashBlameTest, DeathOfTheSecondTaskOfABatchChargesItAndRerunsTheFirst) {
  add({1, 2});
  worker(0).page = 2;  // 1 finished, its result lost in the worker's unsent batch
  dies(worker(0));
  EXPECT_EQ(only_failure().task_id(), 2u);
  EXPECT_THAT(worker(1).sent, ElementsAre(1u));
}

TEST_F(WorkerCrashBlameTest, DeathAfterAPartialBatchChargesTheRunningTask) {
  add({1, 2, 3, 4, 5, 6});
  now_ += std::chrono::microseconds(10);
  done(worker(0), 1);  // fast: the pipeline deepens to hold every task
  ASSERT_THAT(queue(0), ElementsAre(2u, 3u, 4u, 5u, 6u));
  outbox_.take_reports();
  worker(0).page = 3;  // 2 finished with its result in the unsent batch; 3 running
  dies(worker(0));
  EXPECT_EQ(only_failure().task_id(), 3u);
  // The rest rerun in their order on a new worker (2 at first: its pace is not measured).
  ASSERT_EQ(outbox_.spawned.size(), 2u);
  EXPECT_THAT(worker(1).sent, ElementsAre(2u, 4u));
  EXPECT_EQ(dispatcher_.unfinished(), 4u);
}

TEST_F(WorkerCrashBlameTest, PageNamingAReportedTaskChargesTheFirstUnreported) {
  add({1, 2, 3});
  worker(0).page = 1;
  done(worker(0), 1);
  outbox_.take_reports();
  // The worker died between tasks: its page still names 1, reported already.
  dies(worker(0));
  EXPECT_EQ(only_failure().task_id(), 2u);
  EXPECT_THAT(worker(1).sent, ElementsAre(3u));
}

TEST_F(WorkerCrashBlameTest, ResultArrivingBeforeTheDeathIsReportedAndNotCharged) {
  add({1});
  worker(0).page = 1;
  done(worker(0), 1);  // its last write, then it died
  dies(worker(0));
  auto reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].task_id(), 1u);
  EXPECT_FALSE(reports[0].has_failure());
  EXPECT_EQ(dispatcher_.counters().workers_crashed, 1u);
  EXPECT_EQ(dispatcher_.unfinished(), 0u);
}

TEST_F(WorkerCrashBlameTest, TimeoutVerdictOnATaskThatReportedMeanwhileChargesNobody) {
  dispatcher_.image_ready(kImageA, now_);
  dispatcher_.add(task(1, kImageA, 50), now_);
  dispatcher_.add(task(2, kImageA), now_);
  worker(0).page = 1;
  ASSERT_EQ(dispatcher_.deadline_passed(worker(0), 1), Dispatcher::Deadline::kKilled);
  done(worker(0), 1);  // its result raced the kill
  worker(0).page = 2;
  dies(worker(0), killed_by(SIGKILL));
  auto reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 1u);  // the result; no timeout, no crash for 2
  EXPECT_FALSE(reports[0].has_failure());
  EXPECT_EQ(dispatcher_.counters().workers_killed, 1u);
  EXPECT_THAT(worker(1).sent, ElementsAre(2u));
}

TEST_F(WorkerCrashBlameTest, VerdictChargesItsTaskEvenWhenThePageNamesAnother) {
  add({1, 2});
  worker(0).page = 1;
  dispatcher_.cancel(1);
  worker(0).page = 2;  // it moved on before the kill landed
  dies(worker(0), killed_by(SIGKILL));
  auto failure = only_failure();
  EXPECT_EQ(failure.task_id(), 1u);
  EXPECT_EQ(kind_of(failure), FailureKind::kCancelled);
  EXPECT_THAT(worker(1).sent, ElementsAre(2u));
}

TEST_F(WorkerCrashBlameTest, CancelledQueuedTaskIsNeitherChargedNorRerun) {
  add({1, 2});
  worker(0).page = 1;
  dispatcher_.cancel(2);
  outbox_.take_reports();
  dies(worker(0));
  EXPECT_EQ(only_failure().task_id(), 1u);
  EXPECT_EQ(dispatcher_.unfinished(), 0u);
}

TEST_F(WorkerCrashBlameTest, RerunTaskIsChargedByTheSecondDeath) {
  add({1, 2});
  worker(0).page = 1;
  dies(worker(0));
  EXPECT_EQ(only_failure().task_id(), 1u);
  ASSERT_THAT(worker(1).sent, ElementsAre(2u));
  worker(1).page = 2;
  dies(worker(1), killed_by(SIGBUS));
  auto failure = only_failure();
  EXPECT_EQ(failure.task_id(), 2u);
  EXPECT_EQ(failure.failure().signal(), SIGBUS);
  EXPECT_EQ(dispatcher_.counters().workers_crashed, 2u);
  EXPECT_EQ(dispatcher_.unfinished(), 0u);
}

TEST_F(WorkerCrashBlameTwoSlotsTest, TwoDeathsChargeOneTaskEachInEitherOrder) {
  for (bool first_dies_first : {true, false}) {
    SCOPED_TRACE(first_dies_first ? "worker 0 first" : "worker 1 first");
    const std::size_t base = outbox_.spawned.size();
    const std::uint64_t id = first_dies_first ? 10 : 20;
    add({id + 1, id + 2});  // one each: a new worker rather than a queue
    ASSERT_EQ(outbox_.spawned.size(), base + 2);
    FakeProcess& a = worker(base);
    FakeProcess& b = worker(base + 1);
    a.page = id + 1;
    b.page = id + 2;
    dies(first_dies_first ? a : b);
    dies(first_dies_first ? b : a);
    auto reports = outbox_.take_reports();
    ASSERT_EQ(reports.size(), 2u);
    EXPECT_EQ(reports[0].task_id(), first_dies_first ? id + 1 : id + 2);
    EXPECT_EQ(reports[1].task_id(), first_dies_first ? id + 2 : id + 1);
    EXPECT_EQ(dispatcher_.unfinished(), 0u);
  }
}

TEST_F(WorkerCrashBlameTwoSlotsTest, DeathWhileAnotherWorkerReportsChargesOnlyItsOwnTask) {
  add({1, 2, 3, 4});  // a: 1, 3; b: 2, 4
  FakeProcess& a = worker(0);
  FakeProcess& b = worker(1);
  ASSERT_THAT(a.sent, ElementsAre(1u, 3u));
  a.page = 1;
  b.page = 2;
  done(b, 2);
  dies(a);
  done(b, 4);
  auto reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports[0].task_id(), 2u);
  EXPECT_EQ(reports[1].task_id(), 1u);
  EXPECT_TRUE(reports[1].has_failure());
  EXPECT_EQ(reports[2].task_id(), 4u);
  // 3 reran on the replacement (or on b, whichever had room first), not failed.
  EXPECT_EQ(dispatcher_.unfinished(), 1u);
}

TEST_F(WorkerCrashBlameTest, VanishedWorkerChargesItsRunningTask) {
  add({1});
  worker(0).page = 1;
  dies(worker(0), WorkerExit{});
  EXPECT_EQ(only_failure().failure().message(), "worker vanished while running the task");
}

TEST_F(WorkerCrashBlameTest, ProgramThatCannotLoadFailsItsTasksForAWhile) {
  add({1, 2});
  WorkerExit exit = exited_with(127, /*attached=*/false);
  exit.early_stderr = "error while loading shared libraries: libmissing.so\n";
  dies(worker(0), exit);
  auto reports = outbox_.take_reports();
  ASSERT_EQ(reports.size(), 2u);
  for (const auto& r : reports) {
    EXPECT_EQ(kind_of(r), FailureKind::kCrash);
    EXPECT_EQ(r.failure().exit_code(), 127);
    EXPECT_EQ(r.failure().message(),
              "cannot start the program on server server-1 (host host-1): error while loading "
              "shared libraries: libmissing.so");
  }
  EXPECT_EQ(outbox_.spawned.size(), 1u);
  // New tasks of the program fail without a worker until kStartRetryAfter has passed.
  add({3});
  ASSERT_EQ(outbox_.take_reports().size(), 1u);
  EXPECT_EQ(outbox_.spawned.size(), 1u);
  now_ += kStartRetryAfter;
  add({4});
  EXPECT_THAT(outbox_.reports, IsEmpty());
  ASSERT_EQ(outbox_.spawned.size(), 2u);
  EXPECT_THAT(worker(1).sent, ElementsAre(4u));
}

TEST_F(WorkerCrashBlameTest, Exit127AfterItLoadedIsAnOrdinaryCrash) {
  add({1, 2});
  worker(0).page = 1;
  dies(worker(0), exited_with(127, /*attached=*/true));
  EXPECT_EQ(only_failure().task_id(), 1u);
  EXPECT_THAT(worker(1).sent, ElementsAre(2u));
}

}  // namespace
}  // namespace clupy::worker::fakes
