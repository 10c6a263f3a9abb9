// The scheduler's side of futures as arguments (docs/protocol.md#futures-as-arguments): tasks
// that wait for their inputs, get their values spliced into their calls, fail with kDependency,
// and results whose value the client released.
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "clupy/detail/call.hpp"
#include "master/scheduler.hpp"
#include "named_call.hpp"

namespace clupy::master {
namespace {

class RecordingOutbox : public Outbox {
 public:
  void assign(SessionId, wire::AssignTasks& tasks) override {
    for (const auto& a : tasks.tasks()) assigned.push_back(a);
  }
  void cancel(SessionId, wire::CancelAssignments&& tasks) override {
    for (auto id : tasks.task_ids()) cancelled.push_back(id);
  }
  void deliver(SessionId, wire::TaskResults& results) override {
    for (const auto& r : results.results()) delivered.push_back(r);
  }
  std::vector<wire::Assignment> assigned;
  std::vector<std::uint64_t> cancelled;
  std::vector<wire::TaskResult> delivered;
};

constexpr SessionId kClient = 100;
constexpr SessionId kServer = 1;

using test::call_with;

std::string encoded_long(long value) {
  std::string out;
  detail::append_encoded(out, value);
  return out;
}

std::string success(long value) {
  detail::CallOutcome outcome;
  outcome.ok = true;
  outcome.result = encoded_long(value);
  return detail::serialize_outcome(outcome);
}

class SchedulerInputsTest : public ::testing::Test {
 protected:
  SchedulerInputsTest() : scheduler_(registry_, outbox_, SchedulerConfig{}) {
    scheduler_.open_job(kClient, "client", std::string(32, 'i'), "image", true, Clock::now());
    wire::ServerDescription d;
    d.set_server_id("s1");
    d.set_capacity(8);
    registry_.register_server(d, kServer, Clock::now());
    scheduler_.server_available("s1", kServer);
  }

  // Task `id` with plain msgpack `arguments` and the given inputs (task id, position, index).
  void submit(std::uint64_t id, std::string arguments,
              std::vector<std::tuple<std::uint64_t, std::uint32_t, std::int32_t>> inputs = {}) {
    wire::SubmitTasks batch;
    auto* spec = batch.add_tasks();
    spec->set_task_id(id);
    spec->set_call(call_with(std::move(arguments)));
    for (const auto& [input, position, index] : inputs) {
      auto* ref = spec->add_inputs();
      ref->set_task_id(input);
      ref->set_position(position);
      ref->set_index(index);
    }
    scheduler_.submit(kClient, batch, Clock::now());
    scheduler_.dispatch();
  }
  // The assignment of client task `id`'s call, which must have been assigned, by its call.
  std::optional<wire::Assignment> take_assignment(const std::string& call) {
    for (auto it = outbox_.assigned.begin(); it != outbox_.assigned.end(); ++it) {
      if (it->call() != call) continue;
      wire::Assignment a = *it;
      outbox_.assigned.erase(it);
      return a;
    }
    return std::nullopt;
  }
  void finish(const wire::Assignment& a, std::string outcome) {
    wire::TaskResults results;
    auto* r = results.add_results();
    r->set_task_id(a.task_id());
    r->set_outcome(std::move(outcome));
    scheduler_.results("s1", results);
    scheduler_.dispatch();
  }
  const wire::TaskResult* delivered(std::uint64_t id) {
    for (const auto& r : outbox_.delivered)
      if (r.task_id() == id) return &r;
    return nullptr;
  }
  // msgpack [nil] and [a, b] arrays.
  static std::string nil_args(int count) {
    std::string out(1, static_cast<char>(0x90 + count));
    out.append(static_cast<std::size_t>(count), static_cast<char>(0xc0));
    return out;
  }

  Registry registry_;
  RecordingOutbox outbox_;
  Scheduler scheduler_;
};

TEST_F(SchedulerInputsTest, ADependentWaitsThenRunsWithItsInputsValueInItsCall) {
  submit(1, "\x91\x05");
  submit(2, nil_args(1), {{1, 0, -1}});
  EXPECT_EQ(scheduler_.waiting(), 1u);
  ASSERT_EQ(outbox_.assigned.size(), 1u);  // only the input runs
  auto input = take_assignment(call_with("\x91\x05"));
  ASSERT_TRUE(input);
  finish(*input, success(25));
  EXPECT_EQ(scheduler_.waiting(), 0u);
  // Its call now carries 25 where the nil was.
  EXPECT_TRUE(take_assignment(call_with("\x91" + encoded_long(25))));
  EXPECT_EQ(scheduler_.counters().inputs_spliced, 1u);
  ASSERT_NE(delivered(1), nullptr);
  EXPECT_FALSE(delivered(1)->outcome().empty());  // the program holds its future
  EXPECT_EQ(scheduler_.counters().result_bytes_delivered, delivered(1)->outcome().size());
}

TEST_F(SchedulerInputsTest, AVectorArgumentIsFilledElementByElement) {
  submit(1, "\x91\x01");
  submit(2, "\x91\x02");
  // f(vector) with [nil, nil] as its one argument, and a plain argument after it.
  submit(3, "\x92\x92\xc0\xc0\x07", {{2, 0, 1}, {1, 0, 0}});
  finish(*take_assignment(call_with("\x91\x02")), success(20));
  EXPECT_EQ(scheduler_.waiting(), 1u);
  finish(*take_assignment(call_with("\x91\x01")), success(10));
  EXPECT_TRUE(
      take_assignment(call_with("\x92\x92" + encoded_long(10) + encoded_long(20) + "\x07")));
}

TEST_F(SchedulerInputsTest, AFailedInputFailsItsDependentsWithDependencyNamingIt) {
  submit(1, "\x91\x05");
  submit(2, nil_args(1), {{1, 0, -1}});
  submit(3, nil_args(1), {{2, 0, -1}});
  wire::TaskResults results;
  auto* r = results.add_results();
  r->set_task_id(take_assignment(call_with("\x91\x05"))->task_id());
  r->mutable_failure()->set_kind(static_cast<std::uint32_t>(FailureKind::kCrash));
  r->mutable_failure()->set_message("worker killed by signal 9");
  scheduler_.results("s1", results);
  scheduler_.dispatch();
  EXPECT_EQ(scheduler_.waiting(), 0u);
  EXPECT_EQ(scheduler_.tasks(), 0u);
  for (std::uint64_t id : {2, 3}) {
    const wire::TaskResult* d = delivered(id);
    ASSERT_NE(d, nullptr) << id;
    EXPECT_EQ(d->failure().kind(), static_cast<std::uint32_t>(FailureKind::kDependency));
  }
  EXPECT_NE(delivered(2)->failure().message().find("input task 1 failed: crash"), std::string::npos)
      << delivered(2)->failure().message();
  EXPECT_NE(delivered(3)->failure().message().find("input task 2 failed: dependency: input task 1"),
            std::string::npos)
      << delivered(3)->failure().message();
}

TEST_F(SchedulerInputsTest, AnInputThatAlreadyFinishedIsAnsweredInputsGone) {
  submit(1, "\x91\x05");
  finish(*take_assignment(call_with("\x91\x05")), success(25));
  submit(2, nil_args(1), {{1, 0, -1}});
  const wire::TaskResult* d = delivered(2);
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(d->inputs_gone());
  EXPECT_EQ(scheduler_.tasks(), 0u);
  // The id is free: the client may use it again.
  submit(2, "\x91\x06");
  EXPECT_TRUE(take_assignment(call_with("\x91\x06")));
}

TEST_F(SchedulerInputsTest, AReleasedInputsValueGoesToItsDependentButNotToTheClient) {
  submit(1, "\x91\x05");
  submit(2, nil_args(1), {{1, 0, -1}});
  wire::ReleaseResults release;
  release.add_task_ids(1);
  scheduler_.release_results(kClient, release);
  finish(*take_assignment(call_with("\x91\x05")), success(25));
  ASSERT_NE(delivered(1), nullptr);
  EXPECT_TRUE(delivered(1)->value_withheld());
  EXPECT_TRUE(delivered(1)->outcome().empty());
  EXPECT_EQ(scheduler_.counters().values_withheld, 1u);
  EXPECT_EQ(scheduler_.counters().result_bytes_delivered, 0u);
  EXPECT_TRUE(take_assignment(call_with("\x91" + encoded_long(25))));
}

TEST_F(SchedulerInputsTest, CancellingAWaitingDependentLeavesItsInputRunning) {
  submit(1, "\x91\x05");
  submit(2, nil_args(1), {{1, 0, -1}});
  wire::CancelTasks cancel;
  cancel.add_task_ids(2);
  scheduler_.cancel(kClient, cancel);
  scheduler_.dispatch();
  ASSERT_NE(delivered(2), nullptr);
  EXPECT_EQ(delivered(2)->failure().kind(), static_cast<std::uint32_t>(FailureKind::kCancelled));
  EXPECT_EQ(scheduler_.waiting(), 0u);
  EXPECT_EQ(scheduler_.queued(), 0u);
  finish(*take_assignment(call_with("\x91\x05")), success(25));
  EXPECT_TRUE(outbox_.assigned.empty());  // the cancelled dependent never runs
  EXPECT_EQ(scheduler_.tasks(), 0u);
}

TEST_F(SchedulerInputsTest, AClientThatLeavesDropsItsWaitingTasks) {
  submit(1, "\x91\x05");
  submit(2, nil_args(1), {{1, 0, -1}});
  scheduler_.client_gone(kClient);
  EXPECT_EQ(scheduler_.waiting(), 0u);
  EXPECT_EQ(scheduler_.queued(), 0u);
}

}  // namespace
}  // namespace clupy::master
