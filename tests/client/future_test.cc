// Future<T> semantics, in process: the runtime's side is driven directly through the state
// handle that detail::make_pending_future returns.
#include "clupy/future.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "clupy/detail/call.hpp"

namespace clupy {
namespace {

using namespace std::chrono_literals;
using detail::encode_value;
using detail::make_pending_future;

Failure exception_failure(std::string type, std::string message) {
  Failure f;
  f.kind = FailureKind::kException;
  f.type_name = std::move(type);
  f.message = std::move(message);
  f.function = "primes";
  f.server = "s1:7879";
  f.task_id = 17;
  return f;
}

TEST(FutureTest, DroppingTheLastHandleOfAnUnwatchedPendingFutureCallsTheUnobservedHook) {
  auto pending = make_pending_future<int>();
  int calls = 0;
  pending.state->set_unobserved_hook([&] { ++calls; });
  {
    clupy::Future<int> copy = pending.future;
    clupy::Future<int> moved = std::move(pending.future);
    EXPECT_TRUE(pending.state->observed());
  }
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(pending.state->observed());
}

TEST(FutureTest, AFutureWithACallbackOrAlreadyCompleteIsNeverUnobserved) {
  int calls = 0;
  {
    auto pending = make_pending_future<int>();
    pending.state->set_unobserved_hook([&] { ++calls; });
    pending.future.succeed([](int) {});
    pending.future = clupy::Future<int>();
    EXPECT_TRUE(pending.state->observed());  // the callback still wants the value
  }
  {
    auto pending = make_pending_future<int>();
    pending.state->set_unobserved_hook([&] { ++calls; });
    ASSERT_TRUE(pending.state->complete_with_result(encode_value(3)));
    pending.future = clupy::Future<int>();
  }
  EXPECT_EQ(calls, 0);
}

TEST(FutureTest, SucceedCallbackRunsOnceWhenTheResultArrivesLater) {
  auto [future, state] = make_pending_future<int>();
  int calls = 0;
  int seen = 0;
  future.succeed([&](const int& v) {
    ++calls;
    seen = v;
  });
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(future.completed());
  EXPECT_TRUE(state->complete_with_result(encode_value(42)));
  EXPECT_FALSE(state->complete_with_result(encode_value(7)));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, 42);
  EXPECT_TRUE(future.completed());
  EXPECT_TRUE(future.successful());
  EXPECT_EQ(future.value(), 42);
  EXPECT_EQ(future.get(), 42);
}

TEST(FutureTest, CallbacksRegisteredAfterCompletionRunAtOnceExactlyOnce) {
  auto [future, state] = make_pending_future<std::string>();
  state->complete_with_result(encode_value(std::string("done")));
  int succeeded = 0;
  int failed = 0;
  future.succeed([&](const std::string& v) { succeeded += v == "done" ? 1 : 100; })
      .fail([&](const Failure&) { ++failed; });
  EXPECT_EQ(succeeded, 1);
  EXPECT_EQ(failed, 0);
}

TEST(FutureTest, SucceedAndFailReturnTheSameFutureForChaining) {
  auto [future, state] = make_pending_future<int>();
  Future<int>& a = future.succeed([](int) {});
  Future<int>& b = a.fail([](const Failure&) {});
  EXPECT_EQ(&a, &future);
  EXPECT_EQ(&b, &future);
}

TEST(FutureTest, FailureReachesFailCallbacksAndGetRethrowsRemoteError) {
  auto [future, state] = make_pending_future<int>();
  Failure received;
  int succeeded = 0;
  future.fail([&](const Failure& f) { received = f; }).succeed([&](int) { ++succeeded; });
  const Failure sent = exception_failure("std::invalid_argument", "n < 2");
  EXPECT_TRUE(state->complete_with_failure(sent));
  EXPECT_EQ(received, sent);
  EXPECT_EQ(succeeded, 0);
  EXPECT_TRUE(future.completed());
  EXPECT_FALSE(future.successful());
  EXPECT_EQ(future.failure(), sent);
  try {
    future.get();
    FAIL() << "get() returned";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.failure(), sent);
    EXPECT_STREQ(e.what(), sent.to_string().c_str());
  }
  EXPECT_THROW(future.value(), RemoteError);
}

TEST(FutureTest, ValueAndFailureRefuseTheWrongState) {
  auto [future, state] = make_pending_future<int>();
  EXPECT_THROW(future.value(), FutureStateError);
  EXPECT_THROW(future.failure(), FutureStateError);
  state->complete_with_result(encode_value(1));
  EXPECT_THROW(future.failure(), FutureStateError);
  Future<int> empty;
  EXPECT_FALSE(empty.valid());
  EXPECT_THROW(empty.completed(), FutureStateError);
}

TEST(FutureTest, ResultBytesThatDoNotDecodeFailWithAProtocolFailure) {
  auto [future, state] = make_pending_future<std::vector<int>>();
  EXPECT_TRUE(state->complete_with_result(encode_value(std::string("not a vector"))));
  ASSERT_TRUE(future.completed());
  EXPECT_EQ(future.failure().kind, FailureKind::kProtocol);
  EXPECT_NE(future.failure().message.find("std::vector<int"), std::string::npos)
      << future.failure().message;
  auto [truncated, truncated_state] = make_pending_future<std::string>();
  std::string bytes = encode_value(std::string("a long enough string"));
  bytes.resize(bytes.size() / 2);
  truncated_state->complete_with_result(bytes);
  EXPECT_EQ(truncated.failure().kind, FailureKind::kProtocol);
}

TEST(FutureTest, WaitTimesOutWhilePendingAndReturnsOnceAnotherThreadCompletes) {
  auto [future, state] = make_pending_future<int>();
  EXPECT_FALSE(future.wait(10ms));
  std::thread completer([s = state] { s->complete_with_result(encode_value(5)); });
  EXPECT_TRUE(future.wait(60s));
  completer.join();
  EXPECT_EQ(future.value(), 5);
  EXPECT_TRUE(future.wait(0ms));
  EXPECT_TRUE(future.wait(std::chrono::hours::max()));
}

TEST(FutureTest, VoidFuturesCompleteFailAndChain) {
  auto [future, state] = make_pending_future<void>();
  int calls = 0;
  future.succeed([&] { ++calls; });
  Future<int> next = future.then([] { return 3; });
  EXPECT_TRUE(state->complete_with_result(encode_value(msgpack::type::nil_t())));
  EXPECT_EQ(calls, 1);
  future.get();
  future.value();
  EXPECT_EQ(next.get(), 3);

  auto [bad, bad_state] = make_pending_future<void>();
  bad_state->complete_with_result(encode_value(1));
  EXPECT_EQ(bad.failure().kind, FailureKind::kProtocol);
  EXPECT_THROW(bad.get(), RemoteError);
}

TEST(FutureTest, ThenTransformsTheValueOnCompletion) {
  auto [future, state] = make_pending_future<int>();
  Future<std::string> text = future.then([](int v) { return std::to_string(v * 2); });
  Future<void> side = text.then([](const std::string&) {});
  EXPECT_FALSE(text.completed());
  state->complete_with_result(encode_value(21));
  EXPECT_EQ(text.get(), "42");
  EXPECT_TRUE(side.successful());
}

TEST(FutureTest, ThenPassesFailuresOnAndTurnsExceptionsIntoFailures) {
  auto [future, state] = make_pending_future<int>();
  int ran = 0;
  Future<int> skipped = future.then([&](int v) {
    ++ran;
    return v;
  });
  const Failure sent = exception_failure("std::runtime_error", "boom");
  state->complete_with_failure(sent);
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(skipped.failure(), sent);

  Future<int> thrown =
      make_ready_future(1).then([](int) -> int { throw std::out_of_range("index 9"); });
  ASSERT_TRUE(thrown.completed());
  EXPECT_EQ(thrown.failure().kind, FailureKind::kException);
  EXPECT_EQ(thrown.failure().type_name, "std::out_of_range");
  EXPECT_EQ(thrown.failure().message, "index 9");
}

TEST(FutureTest, CancelResolvesAsCancelledCallsTheHookOnceAndIgnoresLateResults) {
  auto [future, state] = make_pending_future<int>();
  int hook_calls = 0;
  state->set_cancel_hook([&] { ++hook_calls; });
  Failure seen;
  future.fail([&](const Failure& f) { seen = f; });
  EXPECT_TRUE(future.cancel());
  EXPECT_FALSE(future.cancel());
  EXPECT_EQ(hook_calls, 1);
  EXPECT_EQ(seen.kind, FailureKind::kCancelled);
  EXPECT_FALSE(state->complete_with_result(encode_value(1)));
  EXPECT_EQ(future.failure().kind, FailureKind::kCancelled);

  auto [done, done_state] = make_pending_future<int>();
  int late_hook = 0;
  done_state->set_cancel_hook([&] { ++late_hook; });
  done_state->complete_with_result(encode_value(2));
  EXPECT_FALSE(done.cancel());
  EXPECT_EQ(late_hook, 0);
  EXPECT_EQ(done.value(), 2);
}

TEST(FutureTest, AThrowingCallbackDoesNotStopTheOthers) {
  auto [future, state] = make_pending_future<int>();
  int later = 0;
  future.succeed([](int) { throw std::runtime_error("callback bug"); });
  future.succeed([&](int) { ++later; });
  state->complete_with_result(encode_value(1));
  EXPECT_EQ(later, 1);
}

TEST(FutureTest, WaitAllReportsWhetherEveryFutureCompleted) {
  std::vector<detail::PendingFuture<int>> pending(3);
  for (auto& p : pending) p = make_pending_future<int>();
  std::vector<Future<int>> futures;
  for (auto& p : pending) futures.push_back(p.future);
  pending[0].state->complete_with_result(encode_value(0));
  pending[2].state->complete_with_failure(exception_failure("E", "m"));
  EXPECT_FALSE(wait_all(futures, 20ms));
  std::thread completer([s = pending[1].state] { s->complete_with_result(encode_value(1)); });
  EXPECT_TRUE(wait_all(futures, 60s));
  completer.join();
}

TEST(FutureTest, WaitAnyReturnsTheFirstCompletedPosition) {
  std::vector<detail::PendingFuture<int>> pending(4);
  for (auto& p : pending) p = make_pending_future<int>();
  std::vector<Future<int>> futures;
  for (auto& p : pending) futures.push_back(p.future);
  EXPECT_EQ(wait_any(futures, 10ms), std::nullopt);
  std::thread completer([s = pending[2].state] { s->complete_with_result(encode_value(2)); });
  EXPECT_EQ(wait_any(futures, 60s), std::optional<std::size_t>(2));
  completer.join();
  pending[1].state->complete_with_result(encode_value(1));
  EXPECT_EQ(wait_any(futures, 0ms), std::optional<std::size_t>(1));
  EXPECT_EQ(wait_any(std::vector<Future<int>>{}, 60s), std::nullopt);
}

TEST(FutureTest, AsCompletedYieldsEachFutureOnceInCompletionOrder) {
  std::vector<detail::PendingFuture<int>> pending(3);
  for (auto& p : pending) p = make_pending_future<int>();
  std::vector<Future<int>> futures;
  for (auto& p : pending) futures.push_back(p.future);
  auto completed = as_completed(futures);
  pending[2].state->complete_with_result(encode_value(20));
  pending[0].state->complete_with_result(encode_value(0));
  pending[1].state->complete_with_failure(exception_failure("E", "m"));
  std::vector<std::string> order;
  for (auto& f : completed) order.push_back(f.successful() ? std::to_string(f.value()) : "failed");
  EXPECT_EQ(order, (std::vector<std::string>{"20", "0", "failed"}));
}

TEST(FutureTest, AsCompletedStopsAtItsDeadline) {
  auto a = make_pending_future<int>();
  auto b = make_pending_future<int>();
  a.state->complete_with_result(encode_value(1));
  auto completed = as_completed(std::vector<Future<int>>{a.future, b.future}, 20ms);
  EXPECT_EQ(completed.next(), std::optional<std::size_t>(0));
  EXPECT_EQ(completed.next(), std::nullopt);
}

// Completion on one thread races registration and waiting on another: every callback must
// run exactly once, every wait must return, and ASan must stay quiet.
TEST(FutureTest, ConcurrentCompletionAndRegistrationRunEveryCallbackExactlyOnce) {
  constexpr int kCount = 2000;
  std::vector<detail::PendingFuture<int>> pending(kCount);
  for (auto& p : pending) p = make_pending_future<int>();
  std::atomic<int> start{0};
  std::thread completer([&] {
    while (start.load() == 0) {
    }
    for (int i = 0; i < kCount; ++i) pending[i].state->complete_with_result(encode_value(i));
  });
  std::vector<std::atomic<int>> calls(kCount);
  std::vector<Future<int>> futures;
  start = 1;
  for (int i = 0; i < kCount; ++i) {
    pending[i].future.succeed([&calls, i](int v) { calls[i] += v == i ? 1 : 1000; });
    futures.push_back(pending[i].future.then([](int v) { return v + 1; }));
  }
  EXPECT_TRUE(wait_all(futures, 120s));
  completer.join();
  for (int i = 0; i < kCount; ++i) {
    EXPECT_EQ(calls[i].load(), 1) << "future " << i;
    EXPECT_EQ(futures[i].value(), i + 1);
  }
}

TEST(FailureTest, ToStringNamesKindTypeMessageFunctionTaskAndServer) {
  EXPECT_EQ(exception_failure("std::invalid_argument", "n < 2").to_string(),
            "exception std::invalid_argument: \"n < 2\" in primes (task 17 on server s1:7879)");
  Failure crash;
  crash.kind = FailureKind::kCrash;
  crash.message = "the worker died";
  crash.signal = 11;
  crash.task_id = 3;
  EXPECT_EQ(crash.to_string(), "crash: the worker died (signal 11, SIGSEGV) (task 3)");
  std::ostringstream out;
  out << crash;
  EXPECT_EQ(out.str(), crash.to_string());
  EXPECT_EQ(to_string(FailureKind::kUnavailable), "unavailable");
}

TEST(ReadableTypeNameTest, DropsTheAbiNamespaceAndDefaultTemplateArguments) {
  using detail::readable_type_name;
  EXPECT_EQ(readable_type_name<std::string>(), "std::string");
  EXPECT_EQ(readable_type_name<std::vector<std::string>>(), "std::vector<std::string>");
  EXPECT_EQ(readable_type_name<std::vector<std::vector<long>>>(), "std::vector<std::vector<long>>");
  EXPECT_EQ((readable_type_name<std::unordered_map<std::string, std::vector<int>>>()),
            "std::unordered_map<std::string, std::vector<int>>");
  EXPECT_EQ(readable_type_name<std::optional<double>>(), "std::optional<double>");
  // Not a default: kept.
  EXPECT_EQ((readable_type_name<std::map<int, int, std::greater<int>>>()),
            "std::map<int, int, std::greater<int>>");
  EXPECT_EQ(detail::readable_type_name("int"), "int");
}

}  // namespace
}  // namespace clupy
