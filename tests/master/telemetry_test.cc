// The dashboard's bookkeeping without a network: TaskOutputs' three bounds, the telemetry's
// per-function figures, failures, /metrics cardinality and the history file.
#include "master/telemetry.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "clupy/detail/call.hpp"
#include "master/call_name.hpp"
#include "support/process.hpp"

namespace clupy::master {
namespace {

std::string call_named(const std::string& name) {
  detail::EncodedCall call;
  call.form = detail::CallForm::kNamed;
  call.name = name;
  call.function_name = name;
  call.arguments = "\x90";  // an empty msgpack array
  return detail::serialize_call(call);
}

std::string thrown_outcome(const std::string& type, const std::string& message) {
  detail::CallOutcome outcome;
  outcome.ok = false;
  outcome.failure.kind = FailureKind::kException;
  outcome.failure.type_name = type;
  outcome.failure.message = message;
  return detail::serialize_outcome(outcome);
}

std::string ok_outcome() {
  detail::CallOutcome outcome;
  outcome.ok = true;
  outcome.result = "\xc0";
  return detail::serialize_outcome(outcome);
}

void finish(Telemetry& telemetry, std::uint64_t job, std::uint64_t task, const std::string& name,
            const std::string& outcome, std::chrono::milliseconds ran) {
  wire::TaskResult result;
  result.set_outcome(outcome);
  result.set_attempts(1);
  const std::string client = "host:1", server = "s1", call = call_named(name);
  telemetry.task_finished(FinishedTask{job, task, client, call, server, ran, result});
}

std::string lines(int from, int to) {
  std::string text;
  for (int i = from; i < to; ++i) text += "line " + std::to_string(i) + "\n";
  return text;
}

TEST(CallFunctionNameTest, ReadsTheNameAsParseCallViewDoesWithoutDecodingTheRest) {
  detail::EncodedCall call;
  call.form = detail::CallForm::kFunction;
  call.invoker = {"build-id:0123456789abcdef", "/bin/p", 0x1234};
  call.function = {"build-id:0123456789abcdef", "/bin/p", 0x123456789};
  call.arguments = std::string(70'000, 'a');   // a 32-bit bin header
  call.function_name = std::string(300, 'f');  // a 16-bit str header
  std::string bytes = detail::serialize_call(call);
  std::string fallback;
  EXPECT_EQ(call_function_name(bytes, fallback), detail::parse_call_view(bytes).function_name);
  EXPECT_TRUE(fallback.empty()) << "read by the fast path";
  call.form = detail::CallForm::kNamed;
  call.name = "named";
  call.function_name = "named";
  call.arguments = "\x92\x01\xa1x";
  bytes = detail::serialize_call(call);
  EXPECT_EQ(call_function_name(bytes, fallback), "named");
  EXPECT_TRUE(fallback.empty());
  EXPECT_THROW(call_function_name(bytes.substr(0, bytes.size() - 1), fallback),
               detail::DecodeError);
  EXPECT_THROW(call_function_name(bytes + "x", fallback), detail::DecodeError);
  EXPECT_THROW(call_function_name("", fallback), detail::DecodeError);
  // With a hint, the next call of the same code skips to its arguments; another code's call
  // replaces the hint.
  CallPrefixHint hint;
  EXPECT_EQ(call_function_name(bytes, fallback, &hint), "named");
  EXPECT_FALSE(hint.prefix.empty());
  call.arguments = "\x92\x02\xa2xy";
  EXPECT_EQ(call_function_name(detail::serialize_call(call), fallback, &hint), "named");
  call.name = call.function_name = "other";
  EXPECT_EQ(call_function_name(detail::serialize_call(call), fallback, &hint), "other");
  EXPECT_TRUE(fallback.empty());
}

TEST(CallFunctionNameTest, TellsValuesFromFailuresAsParseOutcomeViewDoes) {
  for (const std::string& outcome : {ok_outcome(), thrown_outcome("E", "m")})
    EXPECT_EQ(outcome_is_value(outcome), detail::parse_outcome_view(outcome).ok);
  EXPECT_THROW(outcome_is_value("\x94\x01"), detail::DecodeError);
}

TEST(TaskOutputsTest, KeepsTheLastLinesOfEachTaskJoiningPieces) {
  TaskOutputs outputs(TaskOutputLimits{3, 10, 1 << 20});
  outputs.add(1, 7, false, "line 0\nli");
  outputs.add(1, 7, true, "oops\n");
  outputs.add(1, 7, false, "ne 1\n" + lines(2, 6) + "unfinished");
  auto kept = outputs.find(1, 7);
  ASSERT_TRUE(kept);
  EXPECT_TRUE(kept->second.truncated);
  // Three complete lines (the stderr one was the oldest to go), then the unfinished one.
  ASSERT_EQ(kept->second.lines.size(), 4u);
  EXPECT_EQ(kept->second.lines[0].text, "line 3");
  EXPECT_EQ(kept->second.lines[2].text, "line 5");
  EXPECT_EQ(kept->second.lines[3].text, "unfinished");
  EXPECT_FALSE(outputs.find(1, 8));
  // Without a job id, the latest job with that task is meant.
  outputs.add(2, 7, true, "second job\n");
  auto latest = outputs.find(0, 7);
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->first.first, 2u);
  EXPECT_TRUE(latest->second.lines[0].is_stderr);
}

TEST(TaskOutputsTest, AJobKeepsAtMostItsTasksPerJobDroppingItsOldest) {
  TaskOutputs outputs(TaskOutputLimits{5, 3, 1 << 20});
  for (std::uint64_t task = 1; task <= 5; ++task) outputs.add(1, task, false, lines(0, 2));
  outputs.add(2, 1, false, lines(0, 2));  // another job's are not touched
  EXPECT_FALSE(outputs.find(1, 1));
  EXPECT_FALSE(outputs.find(1, 2));
  for (std::uint64_t task = 3; task <= 5; ++task) EXPECT_TRUE(outputs.find(1, task)) << task;
  EXPECT_TRUE(outputs.find(2, 1));
  EXPECT_EQ(outputs.tasks(), 4u);
}

TEST(TaskOutputsTest, TheTotalBoundDropsTheOldestTasksAndLongLinesAreCut) {
  TaskOutputs outputs(TaskOutputLimits{10, 1000, 4000});
  for (std::uint64_t task = 1; task <= 50; ++task)
    outputs.add(task % 3 + 1, task, false, lines(0, 10));
  EXPECT_LE(outputs.bytes(), 4000u);
  EXPECT_GT(outputs.tasks(), 3u);
  EXPECT_LT(outputs.tasks(), 50u);
  EXPECT_TRUE(outputs.find(50 % 3 + 1, 50));
  EXPECT_FALSE(outputs.find(1 % 3 + 1, 1));

  TaskOutputs wide(TaskOutputLimits{10, 10, 1 << 20});
  wide.add(1, 1, false, std::string(10 * TaskOutputLimits::kLineBytes, 'x') + "\nnext\n");
  auto kept = wide.find(1, 1);
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->second.lines[0].text.size(), TaskOutputLimits::kLineBytes);
  EXPECT_EQ(kept->second.lines[1].text, "next");
  EXPECT_LT(wide.bytes(), 2 * TaskOutputLimits::kLineBytes + 200);
}

TEST(TelemetryTest, CountsFunctionsAndRecordsExceptionsWithTheirOutput) {
  Telemetry telemetry(TelemetryConfig{});
  telemetry.task_output(4, 2, true, "about to throw\n");
  for (int i = 0; i < 99; ++i)
    finish(telemetry, 4, 100 + i, "fast", ok_outcome(), std::chrono::milliseconds(2));
  finish(telemetry, 4, 1, "fast", ok_outcome(), std::chrono::milliseconds(1000));
  finish(telemetry, 4, 2, "thrower", thrown_outcome("std::runtime_error", "bad input"),
         std::chrono::milliseconds(5));
  const auto json = telemetry.tasks_json(0);
  ASSERT_EQ(json["functions"].size(), 2u);
  const auto& fast = json["functions"][0];
  EXPECT_EQ(fast["function"], "fast");
  EXPECT_EQ(fast["completed"], 100);
  EXPECT_NEAR(fast["mean_ms"].get<double>(), (99 * 2 + 1000) / 100.0, 0.5);
  // The 99th percentile of 99 x 2 ms and 1 x 1 s is 2 ms, within a bucket's width (20 %).
  EXPECT_NEAR(fast["p99_ms"].get<double>(), 2.0, 0.5);
  EXPECT_EQ(json["functions"][1]["failed"], 1);
  ASSERT_EQ(json["failures"].size(), 1u);
  EXPECT_EQ(json["failures"][0]["kind"], "exception");
  EXPECT_EQ(json["failures"][0]["type_name"], "std::runtime_error");
  EXPECT_EQ(json["failures"][0]["message"], "bad input");
  EXPECT_EQ(json["failures"][0]["function"], "thrower");
  EXPECT_EQ(json["failures"][0]["server"], "s1");
  EXPECT_EQ(json["completed_total"], 100);
  EXPECT_EQ(json["failed_total"], 1);
  EXPECT_EQ(telemetry.failures().front().output, "[stderr] about to throw\n");
  EXPECT_EQ(telemetry.job_json(4)["completed"], 100);
}

TEST(TelemetryTest, MetricsShowTheBusiestFunctionsAndTheRestAsOther) {
  Telemetry telemetry(TelemetryConfig{});
  for (int f = 0; f < 30; ++f)
    for (int i = 0; i <= f; ++i)
      finish(telemetry, 1, static_cast<std::uint64_t>(f * 100 + i), "f" + std::to_string(f),
             ok_outcome(), std::chrono::milliseconds(1));
  telemetry.task_dispatched(std::chrono::microseconds(300));
  telemetry.task_dispatched(std::chrono::milliseconds(30));
  clupy::common::MetricsText metrics;
  telemetry.write_metrics(metrics);
  const std::string text = metrics.take();
  EXPECT_NE(text.find("clupy_dispatch_latency_seconds_bucket{le=\"0.0005\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("clupy_dispatch_latency_seconds_bucket{le=\"0.05\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("clupy_dispatch_latency_seconds_count 2\n"), std::string::npos);
  // f29 ran 30 tasks, f10 (the 20th busiest) 11; f0..f9 (1+...+10 = 55 tasks) are "other".
  EXPECT_NE(text.find("clupy_function_tasks_total{function=\"f29\",result=\"completed\"} 30\n"),
            std::string::npos);
  EXPECT_NE(text.find("{function=\"f10\",result=\"completed\"} 11\n"), std::string::npos);
  EXPECT_EQ(text.find("{function=\"f9\""), std::string::npos);
  EXPECT_NE(text.find("clupy_function_tasks_total{function=\"other\",result=\"completed\"} 55\n"),
            std::string::npos)
      << text;
  std::size_t series = 0;
  for (std::size_t at = 0; (at = text.find("clupy_function_tasks_total{", at)) != std::string::npos;
       ++at)
    ++series;
  EXPECT_EQ(series, 2 * (Telemetry::kMetricFunctions + 1));
}

TEST(TelemetryTest, HistoryOfSamplesFailuresAndJobIdsSurvivesARestart) {
  test::TempDir dir;
  const std::string file = dir.file("dashboard/history.json");
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  {
    Telemetry telemetry(TelemetryConfig{{}, file});
    telemetry.tick(now_ms - 3000, 0, 0, 0);
    telemetry.task_output(3, 9, false, "last words\n");
    finish(telemetry, 3, 9, "thrower", thrown_outcome("E", "went wrong"),
           std::chrono::milliseconds(1));
    telemetry.tick(now_ms - 2000, 5, 2, 1);
    telemetry.set_next_job_id(42);
    telemetry.save();  // as the master does when it stops; a crash loses at most 5 s
  }
  ASSERT_TRUE(std::filesystem::exists(file));
  Telemetry again(TelemetryConfig{{}, file});
  EXPECT_EQ(again.next_job_id(), 42u);
  const auto json = again.tasks_json(0);
  ASSERT_EQ(json["samples"].size(), 1u);
  EXPECT_EQ(json["samples"][0][2], 5);  // submitted
  EXPECT_EQ(json["samples"][0][4], 1);  // failed
  ASSERT_EQ(json["failures"].size(), 1u);
  EXPECT_EQ(json["failures"][0]["message"], "went wrong");
  const auto output = again.output_json(3, 9);
  ASSERT_FALSE(output.is_null());
  EXPECT_EQ(output["lines"][0]["text"], "last words");

  // A damaged file is ignored, not fatal.
  test::write_file(file, "{not json");
  Telemetry damaged(TelemetryConfig{{}, file});
  EXPECT_TRUE(damaged.tasks_json(0)["failures"].empty());
}

}  // namespace
}  // namespace clupy::master
