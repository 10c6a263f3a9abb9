// The scheduler's lineage (docs/protocol.md#held-results): a held result lost with its server is
// made again by rerunning its producer, for the tasks bound to it, the program's fetches and
// tasks whose server could not fetch it; with no retries left, what needs it fails kLost.
#include <gtest/gtest.h>

#include <vector>

#include "clupy/detail/call.hpp"
#include "common/version.hpp"
#include "master/scheduler.hpp"
#include "named_call.hpp"

namespace clupy::master {
namespace {

class RecordingOutbox : public Outbox {
 public:
  void assign(SessionId server, wire::AssignTasks& tasks) override {
    for (const auto& a : tasks.tasks()) assigned.emplace_back(server, a);
  }
  void cancel(SessionId, wire::CancelAssignments&&) override {}
  void deliver(SessionId, wire::TaskResults& results) override {
    for (const auto& r : results.results()) delivered.push_back(r);
  }
  void free_results(SessionId server, wire::FreeResults&& results) override {
    for (auto id : results.result_ids()) freed.emplace_back(server, id);
  }
  void answer_fetches(FetchAnswer&& answer) override { answers.push_back(std::move(answer)); }
  std::vector<std::pair<SessionId, wire::Assignment>> assigned;
  std::vector<wire::TaskResult> delivered;
  std::vector<std::pair<SessionId, std::uint64_t>> freed;
  std::vector<FetchAnswer> answers;
};

constexpr SessionId kClient = 100;
constexpr SessionId kS1 = 1;
constexpr SessionId kS2 = 2;
constexpr SessionId kS3 = 3;

using test::call_with;
// Task `n`'s arguments: [n], or [n, nil...] with a nil for each future it is given.
std::string args(int n, int nils = 0) {
  std::string out(1, static_cast<char>(0x91 + nils));
  out.push_back(static_cast<char>(n));
  out.append(static_cast<std::size_t>(nils), static_cast<char>(0xc0));
  return out;
}

class SchedulerLineageTest : public ::testing::Test {
 protected:
  explicit SchedulerLineageTest(SchedulerConfig config = {})
      : scheduler_(registry_, outbox_, config) {
    scheduler_.open_job(kClient, "client", std::string(32, 'i'), "image", true, Clock::now());
    scheduler_.set_hold_threshold(kClient, 1000);
    add_server("s1", kS1);
    add_server("s2", kS2);
  }
  void add_server(const std::string& id, SessionId session, const std::string& label = "") {
    wire::ServerDescription d;
    d.set_server_id(id);
    d.set_capacity(4);
    d.mutable_build()->set_protocol_minor(common::kHeldResultsMinor);
    if (!label.empty()) (*d.mutable_labels())["tier"] = label;
    registry_.register_server(d, session, Clock::now());
    scheduler_.server_available(id, session);
    scheduler_.dispatch();
  }
  struct Input {
    std::uint64_t task = 0;
    std::uint32_t position = 0;
    bool held = false;  // the program names a result it has (TaskInput.held)
  };
  // Task `id`, whose call is f(id, nil for each input).
  void submit(std::uint64_t id, std::vector<Input> inputs = {}, int retries = -1,
              const std::string& label = "") {
    wire::SubmitTasks batch;
    auto* spec = batch.add_tasks();
    spec->set_task_id(id);
    spec->set_call(call_with(args(static_cast<int>(id), static_cast<int>(inputs.size()))));
    spec->mutable_options()->set_retries(retries);
    if (!label.empty()) (*spec->mutable_options()->mutable_labels())["tier"] = label;
    for (const Input& input : inputs) {
      auto* ref = spec->add_inputs();
      ref->set_task_id(input.task);
      ref->set_position(input.position);
      ref->set_index(-1);
      ref->set_held(input.held);
    }
    scheduler_.submit(kClient, batch, Clock::now());
    scheduler_.dispatch();
  }
  // The assignments of client task `id` so far (its call starts f(id, ...)), in order.
  std::vector<std::pair<SessionId, wire::Assignment>> assignments_of(std::uint64_t id,
                                                                     int inputs = 0) {
    std::vector<std::pair<SessionId, wire::Assignment>> out;
    const std::string call = call_with(args(static_cast<int>(id), inputs));
    for (const auto& [server, a] : outbox_.assigned)
      if (a.call() == call) out.emplace_back(server, a);
    return out;
  }
  // The assignments that name client task `input`'s held result.
  std::vector<std::pair<SessionId, wire::Assignment>> bound_to(std::uint64_t input) {
    std::vector<std::pair<SessionId, wire::Assignment>> out;
    for (const auto& [server, a] : outbox_.assigned)
      for (const auto& held : a.held_inputs())
        if (held.input_task_id() == input) out.emplace_back(server, a);
    return out;
  }
  static std::string server_name(SessionId session) { return "s" + std::to_string(session); }
  // The server running `a` keeps its result as `result_id`.
  void hold(SessionId server, const wire::Assignment& a, std::uint64_t result_id) {
    wire::TaskResults results;
    auto* r = results.add_results();
    r->set_task_id(a.task_id());
    r->mutable_held()->set_server_id(server_name(server));
    r->mutable_held()->set_result_id(result_id);
    r->mutable_held()->set_size(2000);
    scheduler_.results(server_name(server), results);
    scheduler_.dispatch();
  }
  void finish_with(SessionId server, const wire::Assignment& a, std::string outcome) {
    wire::TaskResults results;
    auto* r = results.add_results();
    r->set_task_id(a.task_id());
    r->set_outcome(std::move(outcome));
    scheduler_.results(server_name(server), results);
    scheduler_.dispatch();
  }
  // The server running `a` could not fetch one of its held inputs.
  void input_fetch_failed(SessionId server, const wire::Assignment& a) {
    wire::TaskResults results;
    auto* r = results.add_results();
    r->set_task_id(a.task_id());
    r->mutable_failure()->set_kind(static_cast<std::uint32_t>(FailureKind::kLost));
    r->mutable_failure()->set_message("its input could not be fetched");
    scheduler_.results(server_name(server), results);
    scheduler_.dispatch();
  }
  void lose(const std::string& server) {
    scheduler_.server_lost(server);
    scheduler_.dispatch();
  }
  void release(std::uint64_t id) {
    wire::ReleaseResults release;
    release.add_task_ids(id);
    scheduler_.release_results(kClient, release);
  }
  std::vector<wire::TaskResult> delivered(std::uint64_t id) const {
    std::vector<wire::TaskResult> out;
    for (const auto& r : outbox_.delivered)
      if (r.task_id() == id) out.push_back(r);
    return out;
  }
  static std::string small_outcome() {
    detail::CallOutcome outcome;
    outcome.ok = true;
    detail::append_encoded(outcome.result, 5L);
    return detail::serialize_outcome(outcome);
  }

  Registry registry_;
  RecordingOutbox outbox_;
  Scheduler scheduler_;
};

TEST_F(SchedulerLineageTest, ATaskNamingAnInputThatFinishedHeldMeanwhileIsBoundToItsResult) {
  // The program sent 2 while 1 still ran; 1 finished held before 2 arrived, and the program's
  // release of 1 (its last Future dropped once 2 was on its way) comes after 2.
  submit(1);
  ASSERT_EQ(assignments_of(1).size(), 1u);
  hold(assignments_of(1)[0].first, assignments_of(1)[0].second, 11);
  submit(2, {{1, 1, /*held=*/false}});
  release(1);
  EXPECT_TRUE(delivered(2).empty()) << "not answered inputs_gone";
  const auto bound = bound_to(1);
  ASSERT_EQ(bound.size(), 1u);
  EXPECT_EQ(bound[0].second.held_inputs(0).ref().result_id(), 11u);
  EXPECT_TRUE(outbox_.freed.empty()) << "the result stays while 2 needs it";
  hold(bound[0].first, bound[0].second, 12);
  release(2);
  EXPECT_EQ(outbox_.freed.size(), 2u);
}

TEST_F(SchedulerLineageTest, ALostInputOfAWaitingDependentIsMadeAgainAndBoundToTheNewResult) {
  submit(1);
  submit(3, {}, -1, "b");  // no server carries tier=b yet: 2 keeps waiting for it
  submit(2, {{1, 1}, {3, 2}});
  ASSERT_EQ(assignments_of(1).size(), 1u);
  const auto [first_server, first] = assignments_of(1).front();
  hold(first_server, first, 11);
  EXPECT_EQ(scheduler_.lineage_calls(), 1u);
  lose(server_name(first_server));
  EXPECT_EQ(scheduler_.counters().results_lost, 1u);
  EXPECT_EQ(scheduler_.counters().results_recomputed, 1u);
  const auto runs = assignments_of(1);
  ASSERT_EQ(runs.size(), 2u);
  const SessionId other = first_server == kS1 ? kS2 : kS1;
  EXPECT_EQ(runs[1].first, other);
  hold(other, runs[1].second, 21);
  // The program got task 1's result once, from the first run.
  EXPECT_EQ(delivered(1).size(), 1u);
  add_server("s3", kS3, "b");
  const auto input = assignments_of(3);
  ASSERT_EQ(input.size(), 1u);
  finish_with(kS3, input.front().second, small_outcome());
  // 2's call got 3's value; its place for 1 is filled on the server from the new result.
  const auto dependent = bound_to(1);
  ASSERT_EQ(dependent.size(), 1u);
  ASSERT_EQ(dependent.front().second.held_inputs_size(), 1);
  EXPECT_EQ(dependent.front().second.held_inputs(0).ref().server_id(), server_name(other));
  EXPECT_EQ(dependent.front().second.held_inputs(0).ref().result_id(), 21u);
  EXPECT_EQ(dependent.front().second.held_inputs(0).input_task_id(), 1u);
}

TEST_F(SchedulerLineageTest, WithNoRetriesTheWaitingDependentFailsLostNamingTheInputOnce) {
  submit(1, {}, 0);
  submit(3, {}, -1, "b");
  submit(2, {{1, 1}, {3, 2}});
  const auto [server, first] = assignments_of(1).front();
  hold(server, first, 11);
  EXPECT_EQ(scheduler_.lineage_calls(), 0u);  // nothing to rerun it with
  lose(server_name(server));
  EXPECT_EQ(scheduler_.counters().results_recomputed, 0u);
  EXPECT_EQ(assignments_of(1).size(), 1u);
  const auto failed = delivered(2);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].failure().kind(), static_cast<std::uint32_t>(FailureKind::kLost));
  EXPECT_EQ(failed[0].failure().message(), "input task 1's result was held by server " +
                                               server_name(server) +
                                               ", which was lost (its task has no retries left)");
  EXPECT_EQ(scheduler_.waiting(), 0u);
}

TEST_F(SchedulerLineageTest, AnInputFreedOnceOnlyRecipesNamedItIsMadeAgainFirst) {
  // 1 -> 2 -> (4 with 3): the program keeps none of 1 and 2.
  submit(1);
  submit(2, {{1, 1}});
  release(1);
  release(2);
  const auto [server, a1] = assignments_of(1).front();
  hold(server, a1, 11);
  const auto a2 = assignments_of(2, 1);
  ASSERT_EQ(a2.size(), 1u);
  EXPECT_EQ(a2.front().first, server);  // placed on its input's holder
  submit(3, {}, -1, "b");
  submit(4, {{2, 1}, {3, 2}});
  hold(server, a2.front().second, 12);
  // 1's bytes were freed when 2 finished; its recipe stays, named by 2's.
  ASSERT_EQ(outbox_.freed.size(), 1u);
  EXPECT_EQ(outbox_.freed[0].second, 11u);
  EXPECT_EQ(scheduler_.lineage_calls(), 2u);
  lose(server_name(server));
  EXPECT_EQ(scheduler_.counters().results_lost, 1u);  // only 2's was still held
  EXPECT_EQ(scheduler_.counters().results_recomputed, 2u);
  // 1 runs again first; 2 waits for it, then is bound to it.
  ASSERT_EQ(assignments_of(1).size(), 2u);
  EXPECT_EQ(assignments_of(2, 1).size(), 1u);
  const auto [other, rerun1] = assignments_of(1).back();
  hold(other, rerun1, 21);
  const auto reruns2 = assignments_of(2, 1);
  ASSERT_EQ(reruns2.size(), 2u);
  ASSERT_EQ(reruns2.back().second.held_inputs_size(), 1);
  EXPECT_EQ(reruns2.back().second.held_inputs(0).ref().result_id(), 21u);
  hold(other, reruns2.back().second, 22);
  // Only recipes name 1 again: its new bytes are freed.
  EXPECT_EQ(outbox_.freed.back(), std::make_pair(other, std::uint64_t{21}));
  add_server("s3", kS3, "b");
  finish_with(kS3, assignments_of(3).front().second, small_outcome());
  const auto a4 = bound_to(2);
  ASSERT_EQ(a4.size(), 1u);
  EXPECT_EQ(a4.front().second.held_inputs(0).ref().result_id(), 22u);
  // Each client task's result went to the program once.
  EXPECT_EQ(delivered(1).size(), 1u);
  EXPECT_EQ(delivered(2).size(), 1u);
  // 4 ends: nothing needs 2 or 1 any more; the recipes go with them.
  hold(a4.front().first, a4.front().second, 40);
  release(4);
  EXPECT_EQ(scheduler_.lineage_calls(), 0u);
  EXPECT_EQ(scheduler_.lineage_bytes(), 0u);
  EXPECT_EQ(scheduler_.held_bytes(), 0u);
}

TEST_F(SchedulerLineageTest, ARunningTaskWhoseServerCouldNotFetchALostInputWaitsForItsRerun) {
  submit(1);
  const auto [holder, a1] = assignments_of(1).front();
  hold(holder, a1, 11);
  const SessionId other = holder == kS1 ? kS2 : kS1;
  scheduler_.set_server_held(server_name(holder), true);  // 2 runs elsewhere and pulls 1
  submit(2, {{1, 1, true}}, 0);
  const auto a2 = assignments_of(2, 1);
  ASSERT_EQ(a2.size(), 1u);
  EXPECT_EQ(a2.front().first, other);
  lose(server_name(holder));
  EXPECT_EQ(scheduler_.counters().results_recomputed, 0u);  // 2 runs: it may have its input
  input_fetch_failed(other, a2.front().second);
  // Not 2's failure: it waits for 1's rerun (its own retries, 0, are not used).
  EXPECT_TRUE(delivered(2).empty());
  EXPECT_EQ(scheduler_.counters().results_recomputed, 1u);
  const auto rerun1 = assignments_of(1).back();
  hold(rerun1.first, rerun1.second, 21);
  const auto again = assignments_of(2, 1);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again.back().second.held_inputs(0).ref().result_id(), 21u);
  hold(again.back().first, again.back().second, 22);
  ASSERT_EQ(delivered(2).size(), 1u);
  EXPECT_TRUE(delivered(2)[0].has_held());
}

TEST_F(SchedulerLineageTest, AnInputFetchFailureWhileTheHolderIsKnownRunsTheTaskAgainAsARetry) {
  submit(1);
  const auto [holder, a1] = assignments_of(1).front();
  hold(holder, a1, 11);
  scheduler_.set_server_held(server_name(holder), true);
  submit(2, {{1, 1, true}}, 1);
  const auto a2 = assignments_of(2, 1);
  input_fetch_failed(a2.front().first, a2.front().second);
  EXPECT_EQ(assignments_of(2, 1).size(), 2u);
  EXPECT_EQ(scheduler_.counters().rerun, 1u);
  const auto retry = assignments_of(2, 1).back();
  input_fetch_failed(retry.first, retry.second);  // no retries left: it fails with the cause
  const auto failed = delivered(2);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].failure().message(), "its input could not be fetched");
}

TEST_F(SchedulerLineageTest, AProgramsFetchOfALostResultWaitsForItsRerun) {
  submit(1);
  const auto [holder, a1] = assignments_of(1).front();
  hold(holder, a1, 11);
  auto plan = scheduler_.fetch_held(kClient, 1, 500);
  ASSERT_TRUE(plan.location);
  EXPECT_EQ(plan.location->server, holder);
  lose(server_name(holder));
  EXPECT_EQ(scheduler_.counters().results_recomputed, 0u);  // only the program holds it
  plan = scheduler_.fetch_held(kClient, 1, 501);
  EXPECT_TRUE(plan.waiting);
  plan = scheduler_.fetch_held(kClient, 1, 502);  // the same rerun serves both
  EXPECT_TRUE(plan.waiting);
  scheduler_.dispatch();
  EXPECT_EQ(scheduler_.counters().results_recomputed, 1u);
  const auto rerun = assignments_of(1).back();
  hold(rerun.first, rerun.second, 21);
  ASSERT_EQ(outbox_.answers.size(), 1u);
  const FetchAnswer& answer = outbox_.answers[0];
  EXPECT_EQ(answer.request_ids, (std::vector<std::uint64_t>{501, 502}));
  ASSERT_TRUE(answer.location);
  EXPECT_EQ(answer.location->server, rerun.first);
  EXPECT_EQ(answer.location->ref.result_id(), 21u);
  EXPECT_EQ(delivered(1).size(), 1u);
}

TEST_F(SchedulerLineageTest, ANewTaskGivenAFutureOfALostResultWaitsForItsRerun) {
  submit(1);
  const auto [holder, a1] = assignments_of(1).front();
  hold(holder, a1, 11);
  lose(server_name(holder));
  EXPECT_EQ(scheduler_.counters().results_recomputed, 0u);
  submit(2, {{1, 1, true}});  // the program has 1's value and names its held result
  EXPECT_EQ(scheduler_.counters().results_recomputed, 1u);
  EXPECT_EQ(scheduler_.waiting(), 1u);
  const auto rerun = assignments_of(1).back();
  hold(rerun.first, rerun.second, 21);
  const auto a2 = bound_to(1);
  ASSERT_EQ(a2.size(), 1u);
  EXPECT_EQ(a2.front().second.held_inputs(0).ref().result_id(), 21u);
}

TEST_F(SchedulerLineageTest, ANewTaskGivenAFutureOfALostResultWithNoRetriesFailsLost) {
  submit(1, {}, 0);
  const auto [holder, a1] = assignments_of(1).front();
  hold(holder, a1, 11);
  lose(server_name(holder));
  submit(2, {{1, 1, true}});
  const auto failed = delivered(2);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].failure().kind(), static_cast<std::uint32_t>(FailureKind::kLost));
  EXPECT_EQ(scheduler_.tasks(), 0u);
  EXPECT_EQ(scheduler_.waiting(), 0u);
}

TEST_F(SchedulerLineageTest, AFetchOfALostResultWithNoRetriesFailsNamingWhy) {
  submit(1, {}, 0);
  const auto [holder, a1] = assignments_of(1).front();
  hold(holder, a1, 11);
  lose(server_name(holder));
  const auto plan = scheduler_.fetch_held(kClient, 1, 500);
  EXPECT_FALSE(plan.location);
  EXPECT_FALSE(plan.waiting);
  EXPECT_EQ(plan.failure, "the result of task 1 was held by server " + server_name(holder) +
                              ", which was lost (its task has no retries left)");
}

TEST_F(SchedulerLineageTest, AFailedRerunFailsWhatWaitsForItWithLost) {
  submit(1);
  submit(3, {}, -1, "b");
  submit(2, {{1, 1}, {3, 2}});
  const auto [holder, a1] = assignments_of(1).front();
  hold(holder, a1, 11);
  lose(server_name(holder));
  const auto rerun = assignments_of(1).back();
  detail::CallOutcome thrown;
  thrown.ok = false;
  thrown.failure.kind = FailureKind::kException;
  thrown.failure.message = "boom";
  finish_with(rerun.first, rerun.second, detail::serialize_outcome(thrown));
  const auto failed = delivered(2);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].failure().kind(), static_cast<std::uint32_t>(FailureKind::kLost));
  EXPECT_NE(failed[0].failure().message().find("input task 1's result was held by server " +
                                               server_name(holder) +
                                               ", which was lost (its rerun failed: "),
            std::string::npos)
      << failed[0].failure().message();
  EXPECT_EQ(delivered(1).size(), 1u);
}

TEST_F(SchedulerLineageTest, AClientThatLeavesDuringARerunForgetsEverything) {
  submit(1);
  submit(3, {}, -1, "b");
  submit(2, {{1, 1}, {3, 2}});
  const auto [holder, a1] = assignments_of(1).front();
  hold(holder, a1, 11);
  lose(server_name(holder));
  ASSERT_EQ(scheduler_.counters().results_recomputed, 1u);
  scheduler_.client_gone(kClient);
  EXPECT_EQ(scheduler_.lineage_calls(), 0u);
  EXPECT_EQ(scheduler_.lineage_bytes(), 0u);
  EXPECT_EQ(scheduler_.held_bytes(), 0u);
  // The rerun's result, when it comes, is freed at once.
  const auto rerun = assignments_of(1).back();
  hold(rerun.first, rerun.second, 21);
  EXPECT_EQ(outbox_.freed.back(), std::make_pair(rerun.first, std::uint64_t{21}));
  EXPECT_EQ(scheduler_.tasks(), 0u);
}

class SchedulerLineageMemoryTest : public SchedulerLineageTest {
 protected:
  SchedulerLineageMemoryTest() : SchedulerLineageTest(SchedulerConfig{.lineage_memory = 1}) {}
};

TEST_F(SchedulerLineageMemoryTest, PastLineageMemoryAResultKeepsNoRecipeAndItsLossSaysSo) {
  submit(1);
  const auto [holder, a1] = assignments_of(1).front();
  hold(holder, a1, 11);
  EXPECT_EQ(scheduler_.lineage_calls(), 0u);
  lose(server_name(holder));
  const auto plan = scheduler_.fetch_held(kClient, 1, 500);
  EXPECT_NE(plan.failure.find("lineage_memory"), std::string::npos) << plan.failure;
}

}  // namespace
}  // namespace clupy::master
