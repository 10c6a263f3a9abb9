// The scheduler's work ahead by measured rate, driven by a ManualClock (base/clock.hpp): a
// server that finishes tasks quickly is given about kAheadHorizon (4 ms) of work at its
// measured rate; idle time counts, so a server that was idle goes back to its base slots. With
// the real clock this needs real time to pass; here the test moves time itself.
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "base/clock.hpp"
#include "master/scheduler.hpp"

namespace clupy::master {
namespace {

class AssignmentOutbox : public Outbox {
 public:
  void assign(SessionId, wire::AssignTasks& tasks) override {
    for (const auto& a : tasks.tasks()) assigned.push_back(a);
  }
  void cancel(SessionId, wire::CancelAssignments&&) override {}
  void deliver(SessionId, wire::TaskResults&) override {}
  std::vector<wire::Assignment> assigned;
};

constexpr SessionId kClient = 100;
constexpr SessionId kServer = 1;

class SchedulerPaceTest : public ::testing::Test {
 protected:
  SchedulerPaceTest() : scheduler_(registry_, outbox_, SchedulerConfig{}, clock_) {
    scheduler_.open_job(kClient, "client", std::string(32, 'i'), "image", true, clock_.now());
    wire::ServerDescription d;
    d.set_server_id("s");
    d.set_capacity(1);
    registry_.register_server(d, kServer, clock_.now());
    scheduler_.server_available("s", kServer);
    wire::SubmitTasks batch;
    for (std::uint64_t id = 1; id <= 5000; ++id) batch.add_tasks()->set_task_id(id);
    scheduler_.submit(kClient, batch, clock_.now());
    scheduler_.dispatch();
  }

  // The server reports everything it holds, `after` from now; returns how many.
  std::size_t finish_all(base::Clock::duration after) {
    clock_.advance(after);
    wire::TaskResults results;
    for (const auto& a : outbox_.assigned) results.add_results()->set_task_id(a.task_id());
    outbox_.assigned.clear();
    scheduler_.results("s", results);
    scheduler_.dispatch();
    return static_cast<std::size_t>(results.results_size());
  }

  base::ManualClock clock_;
  Registry registry_;
  AssignmentOutbox outbox_;
  Scheduler scheduler_;
};

TEST_F(SchedulerPaceTest, FastServerGetsAboutFourMillisecondsOfWorkAhead) {
  ASSERT_EQ(outbox_.assigned.size(), 1u);  // capacity 1, nothing measured yet
  // One task per 0.15 ms: the 67th result closes the 10 ms rate window (10.05 ms), and 4 ms of
  // work at that rate is 26.7 tasks.
  for (int i = 0; i < 66; ++i) ASSERT_EQ(finish_all(std::chrono::microseconds(150)), 1u);
  EXPECT_EQ(outbox_.assigned.size(), 1u);
  EXPECT_EQ(finish_all(std::chrono::microseconds(150)), 1u);
  EXPECT_EQ(outbox_.assigned.size(), 26u);
}

TEST_F(SchedulerPaceTest, ServerIdleForAWhileGoesBackToItsBaseSlots) {
  for (int i = 0; i < 67; ++i) finish_all(std::chrono::microseconds(150));
  ASSERT_EQ(outbox_.assigned.size(), 26u);
  // 26 tasks in a second. Idle time counts: 0.1 task in 4 ms, so the base slot only.
  EXPECT_EQ(finish_all(std::chrono::seconds(1)), 26u);
  EXPECT_EQ(outbox_.assigned.size(), 1u);
}

TEST_F(SchedulerPaceTest, RateIsNotMeasuredBeforeAWindowHasPassed) {
  // A burst of quick results within 10 ms changes nothing yet.
  for (int i = 0; i < 50; ++i) finish_all(std::chrono::microseconds(10));
  EXPECT_EQ(outbox_.assigned.size(), 1u);
}

TEST_F(SchedulerPaceTest, WorkAheadIsCappedAtFiveHundredTwelveTasks) {
  // 4 us per task: 2500 results close the window, and 4 ms would be 1000 tasks.
  for (int i = 0; i < 3000 && outbox_.assigned.size() == 1; ++i)
    finish_all(std::chrono::microseconds(4));
  EXPECT_EQ(outbox_.assigned.size(), 512u);
}

}  // namespace
}  // namespace clupy::master
