// The scheduler's side of pushed calls (docs/protocol.md#pushed-calls): tickets per placement,
// routing of calls sent through the master, calls that never arrive.
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "common/version.hpp"
#include "master/scheduler.hpp"

namespace clupy::master {
namespace {

class TicketOutbox : public Outbox {
 public:
  void assign(SessionId server, wire::AssignTasks& tasks) override {
    for (const auto& a : tasks.tasks()) assigned[server].push_back(a);
  }
  void cancel(SessionId, wire::CancelAssignments&&) override {}
  void deliver(SessionId client, wire::TaskResults& results) override {
    for (const auto& r : results.results()) delivered[client].push_back(r);
  }
  void call_tickets(SessionId client, wire::CallTickets& batch) override {
    for (const auto& t : batch.tickets()) tickets[client].push_back(t);
  }
  std::map<SessionId, std::vector<wire::Assignment>> assigned;
  std::map<SessionId, std::vector<wire::TaskResult>> delivered;
  std::map<SessionId, std::vector<wire::CallTicket>> tickets;
};

constexpr SessionId kClient = 100;
constexpr std::uint64_t kCallSize = 1 << 20;

class SchedulerPushedTest : public ::testing::Test {
 protected:
  SchedulerPushedTest() : scheduler_(registry_, outbox_, SchedulerConfig{}) {
    scheduler_.open_job(kClient, "client", std::string(32, 'i'), "image", true, Clock::now());
  }
  void add_server(const std::string& id, SessionId session, unsigned minor,
                  const std::string& data_address) {
    wire::ServerDescription d;
    d.set_server_id(id);
    d.set_capacity(1);
    d.mutable_build()->set_protocol_minor(minor);
    d.set_data_address(data_address);
    registry_.register_server(d, session, Clock::now());
    scheduler_.server_available(id, session);
    scheduler_.dispatch();
  }
  void submit_pushed(std::uint64_t id, int retries = -1) {
    wire::SubmitTasks batch;
    auto* spec = batch.add_tasks();
    spec->set_task_id(id);
    spec->set_pushed_call_size(kCallSize);
    spec->set_function_name("echo");
    spec->mutable_options()->set_retries(retries);
    scheduler_.submit(kClient, batch, Clock::now());
    scheduler_.dispatch();
  }
  // The server answers the task: its call never came.
  void call_missing(const std::string& server_id, std::uint64_t task_id) {
    wire::TaskResults results;
    auto* r = results.add_results();
    r->set_task_id(task_id);
    r->set_call_missing(true);
    r->mutable_failure()->set_kind(static_cast<std::uint32_t>(FailureKind::kLost));
    scheduler_.results(server_id, results);
    scheduler_.dispatch();
  }

  Registry registry_;
  TicketOutbox outbox_;
  Scheduler scheduler_;
};

TEST_F(SchedulerPushedTest, APushedTaskGoesToAServerThatTakesPushedCallsWithATicketForItsClient) {
  add_server("old", 1, common::kHeldResultsMinor, "old:1");
  add_server("new", 2, common::kPushedCallsMinor, "new:2");
  submit_pushed(7);
  EXPECT_TRUE(outbox_.assigned[1].empty());
  ASSERT_EQ(outbox_.assigned[2].size(), 1u);
  const wire::Assignment& a = outbox_.assigned[2][0];
  EXPECT_TRUE(a.call().empty());
  EXPECT_NE(a.call_ticket(), 0u);
  ASSERT_EQ(outbox_.tickets[kClient].size(), 1u);
  const wire::CallTicket& t = outbox_.tickets[kClient][0];
  EXPECT_EQ(t.task_id(), 7u);
  EXPECT_EQ(t.ticket(), a.call_ticket());
  EXPECT_EQ(t.server_id(), "new");
  EXPECT_EQ(t.data_address(), "new:2");
  EXPECT_EQ(scheduler_.counters().call_tickets, 1u);
  EXPECT_EQ(scheduler_.counters().call_bytes_pushed, kCallSize);
  EXPECT_EQ(scheduler_.counters().call_bytes_received, 0u);
}

TEST_F(SchedulerPushedTest, OnlyTheCurrentPlacementsTicketRoutesACallAndALostServerGivesANewOne) {
  add_server("s1", 1, common::kPushedCallsMinor, "s1:1");
  submit_pushed(7);
  ASSERT_EQ(outbox_.assigned[1].size(), 1u);
  const std::uint64_t first = outbox_.assigned[1][0].call_ticket();
  const std::uint64_t master_id = outbox_.assigned[1][0].task_id();
  auto route = scheduler_.pushed_call_route(kClient, 7, first);
  ASSERT_TRUE(route);
  EXPECT_EQ(route->server, 1u);
  EXPECT_EQ(route->task_id, master_id);
  EXPECT_FALSE(scheduler_.pushed_call_route(kClient, 7, first + 1));
  EXPECT_FALSE(scheduler_.pushed_call_route(kClient, 8, first));
  EXPECT_FALSE(scheduler_.pushed_call_route(kClient + 1, 7, first));

  add_server("s2", 2, common::kPushedCallsMinor, "s2:2");
  scheduler_.server_lost("s1");
  scheduler_.dispatch();
  ASSERT_EQ(outbox_.assigned[2].size(), 1u);
  const std::uint64_t second = outbox_.assigned[2][0].call_ticket();
  EXPECT_NE(second, first);
  EXPECT_FALSE(scheduler_.pushed_call_route(kClient, 7, first));
  ASSERT_TRUE(scheduler_.pushed_call_route(kClient, 7, second));
  EXPECT_EQ(scheduler_.pushed_call_route(kClient, 7, second)->server, 2u);
  ASSERT_EQ(outbox_.tickets[kClient].size(), 2u);
  EXPECT_EQ(outbox_.tickets[kClient][1].server_id(), "s2");
}

TEST_F(SchedulerPushedTest, ACallThatNeverCameIsPlacedAgainForARetryThenFailsLost) {
  add_server("s1", 1, common::kPushedCallsMinor, "s1:1");
  submit_pushed(7, /*retries=*/1);
  ASSERT_EQ(outbox_.assigned[1].size(), 1u);
  call_missing("s1", outbox_.assigned[1][0].task_id());
  ASSERT_EQ(outbox_.assigned[1].size(), 2u) << "placed again";
  EXPECT_NE(outbox_.assigned[1][1].call_ticket(), outbox_.assigned[1][0].call_ticket());
  EXPECT_TRUE(outbox_.delivered[kClient].empty());
  call_missing("s1", outbox_.assigned[1][1].task_id());
  ASSERT_EQ(outbox_.delivered[kClient].size(), 1u);
  const wire::TaskResult& failed = outbox_.delivered[kClient][0];
  EXPECT_EQ(failed.task_id(), 7u);
  EXPECT_EQ(failed.failure().kind(), static_cast<std::uint32_t>(FailureKind::kLost));
  EXPECT_NE(failed.failure().message().find("never reached server s1"), std::string::npos)
      << failed.failure().message();
  EXPECT_EQ(scheduler_.counters().calls_missing, 2u);
  EXPECT_EQ(scheduler_.tasks(), 0u);
}

TEST_F(SchedulerPushedTest, APushedSpecWithCallBytesOrInputsIsRefused) {
  add_server("s1", 1, common::kPushedCallsMinor, "s1:1");
  wire::SubmitTasks batch;
  auto* spec = batch.add_tasks();
  spec->set_task_id(7);
  spec->set_pushed_call_size(kCallSize);
  spec->set_call("bytes as well");
  scheduler_.submit(kClient, batch, Clock::now());
  scheduler_.dispatch();
  ASSERT_EQ(outbox_.delivered[kClient].size(), 1u);
  EXPECT_EQ(outbox_.delivered[kClient][0].failure().kind(),
            static_cast<std::uint32_t>(FailureKind::kProtocol));
  EXPECT_NE(outbox_.delivered[kClient][0].failure().message().find("pushed call"),
            std::string::npos);
  EXPECT_TRUE(outbox_.assigned[1].empty());
  EXPECT_EQ(scheduler_.tasks(), 0u);
}

TEST_F(SchedulerPushedTest, AHeldResultOfAPushedTaskKeepsNoRecipe) {
  add_server("s1", 1, common::kPushedCallsMinor, "s1:1");
  scheduler_.set_hold_threshold(kClient, 1024);
  submit_pushed(7);
  ASSERT_EQ(outbox_.assigned[1].size(), 1u);
  wire::TaskResults results;
  auto* r = results.add_results();
  r->set_task_id(outbox_.assigned[1][0].task_id());
  r->mutable_held()->set_server_id("s1");
  r->mutable_held()->set_result_id(1);
  r->mutable_held()->set_size(kCallSize);
  scheduler_.results("s1", results);
  scheduler_.dispatch();
  EXPECT_EQ(scheduler_.counters().results_held, 1u);
  EXPECT_EQ(scheduler_.lineage_calls(), 0u);
  ASSERT_EQ(outbox_.delivered[kClient].size(), 1u);
  EXPECT_TRUE(outbox_.delivered[kClient][0].has_held());
}

}  // namespace
}  // namespace clupy::master
