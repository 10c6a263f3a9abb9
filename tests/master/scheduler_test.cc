#include "master/scheduler.hpp"

#include <gtest/gtest.h>

#include <map>
#include <vector>

namespace clupy::master {
namespace {

// Records what the scheduler sends, per session.
class RecordingOutbox : public Outbox {
 public:
  void assign(SessionId server, wire::AssignTasks& tasks) override {
    for (const auto& a : tasks.tasks()) assigned[server].push_back(a);
  }
  void cancel(SessionId server, wire::CancelAssignments&& tasks) override {
    for (auto id : tasks.task_ids()) cancelled[server].push_back(id);
  }
  void deliver(SessionId client, wire::TaskResults& results) override {
    for (const auto& r : results.results()) delivered[client].push_back(r);
  }

  // Takes what was assigned to `server` so far.
  std::vector<wire::Assignment> take_assigned(SessionId server) {
    auto taken = std::move(assigned[server]);
    assigned[server].clear();
    return taken;
  }

  std::map<SessionId, std::vector<wire::Assignment>> assigned;
  std::map<SessionId, std::vector<std::uint64_t>> cancelled;
  std::map<SessionId, std::vector<wire::TaskResult>> delivered;
};

constexpr SessionId kClient = 100;

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() : scheduler_(registry_, outbox_, SchedulerConfig{}) {
    scheduler_.open_job(kClient, "client", std::string(32, 'i'), "image", true, Clock::now());
  }

  // Registers a server with `capacity` slots (no work ahead) and the given labels.
  void add_server(const std::string& id, SessionId session, unsigned capacity = 1,
                  std::map<std::string, std::string> labels = {}) {
    wire::ServerDescription d;
    d.set_server_id(id);
    d.set_capacity(capacity);
    for (const auto& [k, v] : labels) (*d.mutable_labels())[k] = v;
    registry_.register_server(d, session, Clock::now());
    scheduler_.server_available(id, session);
    scheduler_.dispatch();
  }

  // Submits tasks with the given client ids; the call bytes say which task it is.
  void submit(std::vector<std::uint64_t> client_ids, std::map<std::string, std::string> labels = {},
              int retries = -1) {
    wire::SubmitTasks batch;
    for (auto id : client_ids) {
      auto* spec = batch.add_tasks();
      spec->set_task_id(id);
      spec->set_call("call-" + std::to_string(id));
      spec->mutable_options()->set_retries(retries);
      for (const auto& [k, v] : labels) (*spec->mutable_options()->mutable_labels())[k] = v;
    }
    scheduler_.submit(kClient, batch, Clock::now());
    scheduler_.dispatch();
  }

  // The server reports the given assignments as done (with an outcome).
  void complete(const std::string& server_id, const std::vector<wire::Assignment>& done) {
    wire::TaskResults results;
    for (const auto& a : done) {
      auto* r = results.add_results();
      r->set_task_id(a.task_id());
      r->set_outcome("out-" + a.call());
    }
    scheduler_.results(server_id, results);
    scheduler_.dispatch();
  }

  std::vector<wire::TaskResult>& delivered() { return outbox_.delivered[kClient]; }

  Registry registry_;
  RecordingOutbox outbox_;
  Scheduler scheduler_;
};

TEST_F(SchedulerTest, AHeldServerTakesNoTasksUntilReleased) {
  // Dependencies not satisfied (docs/dependencies.md): held, then released.
  add_server("s1", 1);
  scheduler_.set_server_held("s1", true);
  EXPECT_TRUE(scheduler_.server_held("s1"));
  submit({1});
  EXPECT_TRUE(outbox_.take_assigned(1).empty());
  EXPECT_EQ(scheduler_.queued(), 1u);
  scheduler_.set_server_held("s1", false);
  scheduler_.dispatch();
  const auto assigned = outbox_.take_assigned(1);
  ASSERT_EQ(assigned.size(), 1u);
  EXPECT_EQ(assigned[0].call(), "call-1");
}

TEST_F(SchedulerTest, AServerThatRefusesTheClientsProgramGetsNoneOfItsTasks) {
  add_server("cannot", 1, 4);
  add_server("can", 2, 1);
  scheduler_.set_refused(kClient, "cannot", true);
  submit({1, 2});
  EXPECT_TRUE(outbox_.take_assigned(1).empty());
  ASSERT_EQ(outbox_.take_assigned(2).size(), 1u);  // one slot: the other task waits for it
  EXPECT_EQ(scheduler_.queued(), 1u);
  scheduler_.set_refused(kClient, "cannot", false);  // e.g. its offer changed
  scheduler_.dispatch();
  EXPECT_EQ(outbox_.take_assigned(1).size(), 1u);
}

TEST_F(SchedulerTest, ResultsGoBackUnderTheClientsIdsAndFreeEverything) {
  add_server("a", 1, 2);
  submit({7, 8, 9});
  auto first = outbox_.take_assigned(1);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].call(), "call-7");
  EXPECT_EQ(first[1].call(), "call-8");
  EXPECT_EQ(scheduler_.queued(), 1u);
  complete("a", first);
  ASSERT_EQ(delivered().size(), 2u);
  EXPECT_EQ(delivered()[0].task_id(), 7u);
  EXPECT_EQ(delivered()[0].outcome(), "out-call-7");
  EXPECT_EQ(delivered()[0].server_id(), "a");
  EXPECT_EQ(delivered()[0].attempts(), 1u);
  auto second = outbox_.take_assigned(1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].call(), "call-9");
  complete("a", second);
  EXPECT_EQ(delivered().size(), 3u);
  EXPECT_EQ(scheduler_.tasks(), 0u);
  EXPECT_EQ(scheduler_.running(), 0u);
  EXPECT_EQ(scheduler_.queued(), 0u);
}

TEST_F(SchedulerTest, ReusedBatchesCarryNothingOfTheirLastTasks) {
  add_server("a", 1, 1);
  wire::SubmitTasks batch;
  auto* spec = batch.add_tasks();
  spec->set_task_id(1);
  spec->set_call(std::string(100, 'x'));
  spec->mutable_options()->set_timeout_ms(5000);
  scheduler_.submit(kClient, batch, Clock::now());
  scheduler_.dispatch();
  auto first = outbox_.take_assigned(1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].timeout_ms(), 5000u);
  wire::TaskResults results;
  auto* failed = results.add_results();
  failed->set_task_id(first[0].task_id());
  failed->mutable_failure()->set_message("boom");
  scheduler_.results("a", results);
  submit({2});  // dispatched into the same (cleared) messages
  auto second = outbox_.take_assigned(1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].call(), "call-2");
  EXPECT_EQ(second[0].timeout_ms(), 0u);
  complete("a", second);
  ASSERT_EQ(delivered().size(), 2u);
  EXPECT_EQ(delivered()[0].failure().message(), "boom");
  EXPECT_FALSE(delivered()[1].has_failure());
  EXPECT_EQ(delivered()[1].outcome(), "out-call-2");
}

TEST_F(SchedulerTest, AReusedTaskSlotIgnoresALateDuplicateOfTheOldResult) {
  add_server("a", 1, 1);
  submit({1});
  auto old = outbox_.take_assigned(1);
  complete("a", old);
  submit({2});  // reuses the freed slot under a new id
  auto fresh = outbox_.take_assigned(1);
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_NE(fresh[0].task_id(), old[0].task_id());
  complete("a", old);  // a duplicate of the first result
  EXPECT_EQ(delivered().size(), 1u);
  EXPECT_EQ(scheduler_.running(), 1u);
  complete("a", fresh);
  ASSERT_EQ(delivered().size(), 2u);
  EXPECT_EQ(delivered()[1].task_id(), 2u);
  EXPECT_EQ(delivered()[1].outcome(), "out-call-2");
}

TEST_F(SchedulerTest, ALostServersTasksRerunOnAServerWithTheirLabels) {
  add_server("gpu1", 1, 2, {{"gpu", "1"}});
  add_server("plain", 2, 2);
  submit({1, 2}, {{"gpu", "1"}});
  submit({3});
  ASSERT_EQ(outbox_.take_assigned(1).size(), 2u);
  ASSERT_EQ(outbox_.take_assigned(2).size(), 1u);
  EXPECT_EQ(scheduler_.label_sets(), 1u);
  scheduler_.server_lost("gpu1");
  scheduler_.dispatch();
  EXPECT_TRUE(outbox_.take_assigned(2).empty());  // no gpu label there
  EXPECT_EQ(scheduler_.queued(), 2u);
  add_server("gpu2", 3, 2, {{"gpu", "1"}});
  scheduler_.dispatch();
  auto rerun = outbox_.take_assigned(3);
  ASSERT_EQ(rerun.size(), 2u);
  EXPECT_EQ(rerun[0].call(), "call-1");  // in submission order
  EXPECT_EQ(rerun[1].call(), "call-2");
  complete("gpu1", rerun);  // the lost server cannot finish them
  EXPECT_TRUE(delivered().empty());
  complete("gpu2", rerun);
  ASSERT_EQ(delivered().size(), 2u);
  EXPECT_EQ(delivered()[0].server_id(), "gpu2");
  EXPECT_EQ(delivered()[0].attempts(), 2u);
  EXPECT_EQ(scheduler_.counters().rerun, 2u);
  EXPECT_EQ(scheduler_.label_sets(), 0u);  // freed with its last task
}

TEST_F(SchedulerTest, ATaskOutOfRetriesFailsWhenItsServerIsLost) {
  add_server("a", 1, 1);
  submit({1}, {}, 0);
  ASSERT_EQ(outbox_.take_assigned(1).size(), 1u);
  scheduler_.server_lost("a");
  scheduler_.dispatch();
  ASSERT_EQ(delivered().size(), 1u);
  EXPECT_EQ(delivered()[0].task_id(), 1u);
  EXPECT_EQ(delivered()[0].failure().kind(), static_cast<std::uint32_t>(FailureKind::kLost));
  EXPECT_EQ(scheduler_.tasks(), 0u);
}

TEST_F(SchedulerTest, CancelByClientIdFailsAQueuedTaskAndStopsARunningOne) {
  add_server("a", 1, 1);
  submit({1, 2, 3});
  auto running = outbox_.take_assigned(1);
  ASSERT_EQ(running.size(), 1u);
  wire::CancelTasks cancel;
  cancel.add_task_ids(2);   // queued
  cancel.add_task_ids(1);   // running
  cancel.add_task_ids(99);  // unknown: ignored
  scheduler_.cancel(kClient, cancel);
  scheduler_.dispatch();
  ASSERT_EQ(delivered().size(), 1u);
  EXPECT_EQ(delivered()[0].task_id(), 2u);
  EXPECT_EQ(delivered()[0].failure().kind(), static_cast<std::uint32_t>(FailureKind::kCancelled));
  ASSERT_EQ(outbox_.cancelled[1].size(), 1u);
  EXPECT_EQ(outbox_.cancelled[1][0], running[0].task_id());
  EXPECT_EQ(scheduler_.queued(), 1u);
  // The server answers for the running one; the cancelled queued one is skipped, task 3 runs.
  wire::TaskResults results;
  auto* r = results.add_results();
  r->set_task_id(running[0].task_id());
  r->mutable_failure()->set_kind(static_cast<std::uint32_t>(FailureKind::kCancelled));
  scheduler_.results("a", results);
  scheduler_.dispatch();
  auto next = outbox_.take_assigned(1);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].call(), "call-3");
  EXPECT_EQ(scheduler_.queued(), 0u);
}

TEST_F(SchedulerTest, AGoneClientsQueuedTasksAreDroppedAndItsRunningResultsGoNowhere) {
  add_server("a", 1, 1);
  submit({1, 2, 3});
  auto running = outbox_.take_assigned(1);
  ASSERT_EQ(scheduler_.client_gone(kClient), std::optional<std::uint64_t>(1));
  EXPECT_EQ(scheduler_.queued(), 0u);
  EXPECT_EQ(scheduler_.tasks(), 1u);  // the running one, until its result comes
  EXPECT_FALSE(scheduler_.owner_of(running[0].task_id(), "a"));
  complete("a", running);
  EXPECT_EQ(scheduler_.tasks(), 0u);
  EXPECT_TRUE(delivered().empty());
}

TEST_F(SchedulerTest, TasksWithTheSameLabelsShareOneSet) {
  submit({1, 2, 3}, {{"zone", "x"}, {"gpu", "1"}});
  submit({4}, {{"gpu", "1"}, {"zone", "x"}});
  submit({5}, {{"zone", "y"}});
  submit({6});
  EXPECT_EQ(scheduler_.label_sets(), 2u);
  add_server("xy", 1, 8, {{"zone", "x"}, {"gpu", "1"}});
  auto ran = outbox_.take_assigned(1);
  ASSERT_EQ(ran.size(), 4u);  // task 5 needs zone y (and a client's queue is in order)
  complete("xy", ran);
  EXPECT_EQ(scheduler_.label_sets(), 1u);
  EXPECT_EQ(scheduler_.queued(), 2u);
}

// Issue 18, item 3: a reused id, one task running and one queued, then the client leaves and
// the server is lost: nothing may throw, nothing may stay behind.
TEST_F(SchedulerTest, AReusedTaskIdIsRefusedAndLosingItsServerLaterIsHarmless) {
  add_server("a", 1, 1);
  submit({7});
  auto running = outbox_.take_assigned(1);
  ASSERT_EQ(running.size(), 1u);
  submit({7});
  ASSERT_EQ(delivered().size(), 1u);
  EXPECT_EQ(delivered()[0].task_id(), 7u);
  EXPECT_EQ(delivered()[0].failure().kind(), static_cast<std::uint32_t>(FailureKind::kProtocol));
  EXPECT_NE(delivered()[0].failure().message().find("task id 7 is already used"),
            std::string::npos);
  EXPECT_EQ(scheduler_.queued(), 0u);
  EXPECT_EQ(scheduler_.owner_of(running[0].task_id(), "a"),
            std::make_pair(kClient, std::uint64_t{7}));
  EXPECT_FALSE(scheduler_.owner_of(running[0].task_id(), "b"));  // only its own server's output
  scheduler_.client_gone(kClient);
  scheduler_.server_lost("a");
  EXPECT_EQ(scheduler_.tasks(), 0u);
}

TEST_F(SchedulerTest, TasksPastTwiceTheWindowOrOfAnotherJobAreRefused) {
  Scheduler small(registry_, outbox_, SchedulerConfig{.window = 2});
  small.open_job(kClient + 1, "small", std::string(32, 'i'), "image", true, Clock::now());
  wire::SubmitTasks batch;
  for (std::uint64_t id = 1; id <= 10; ++id) batch.add_tasks()->set_task_id(id);
  small.submit(kClient + 1, batch, Clock::now());
  small.dispatch();
  EXPECT_EQ(small.queued(), 4u);
  ASSERT_EQ(outbox_.delivered[kClient + 1].size(), 6u);
  EXPECT_NE(outbox_.delivered[kClient + 1][0].failure().message().find("twice the master's window"),
            std::string::npos);
  wire::SubmitTasks foreign;
  foreign.set_job_id(12345);
  foreign.add_tasks()->set_task_id(99);
  small.submit(kClient + 1, foreign, Clock::now());
  small.dispatch();
  EXPECT_EQ(small.queued(), 4u);
  EXPECT_NE(outbox_.delivered[kClient + 1].back().failure().message().find("names job 12345"),
            std::string::npos);
}

// A draining server (its Slurm job nears its end) gets nothing new; the tasks it hands back
// run elsewhere, in order, with no retry spent and no attempt counted.
TEST_F(SchedulerTest, ADrainingServerHandsBackTasksThatRunElsewhere) {
  add_server("a", 1, 4);
  submit({1, 2, 3, 4}, {}, /*retries=*/0);
  auto on_a = outbox_.take_assigned(1);
  ASSERT_EQ(on_a.size(), 4u);
  add_server("b", 2, 4);
  google::protobuf::RepeatedField<std::uint64_t> handed_back;
  handed_back.Add(on_a[2].task_id());
  handed_back.Add(on_a[3].task_id());
  EXPECT_TRUE(scheduler_.server_draining("a", handed_back));
  scheduler_.dispatch();
  auto on_b = outbox_.take_assigned(2);
  ASSERT_EQ(on_b.size(), 2u);
  EXPECT_EQ(on_b[0].call(), "call-3");
  EXPECT_EQ(on_b[1].call(), "call-4");
  submit({5});
  EXPECT_TRUE(outbox_.take_assigned(1).empty()) << "a draining server gets no new task";
  ASSERT_EQ(outbox_.take_assigned(2).size(), 1u);
  EXPECT_FALSE(scheduler_.server_draining("a", {}));  // told again: nothing changes
  complete("a", {on_a[0], on_a[1]});
  complete("b", on_b);
  ASSERT_EQ(delivered().size(), 4u);
  for (const auto& result : delivered()) {
    EXPECT_FALSE(result.has_failure()) << result.failure().message();
    EXPECT_EQ(result.attempts(), 1u) << "task " << result.task_id();
  }
  EXPECT_EQ(scheduler_.counters().rerun, 0u);
}

}  // namespace
}  // namespace clupy::master
