// What the dashboard and /metrics tell about tasks (docs/operations.md#dashboard): counts per
// second for the last hour, per-function counts and run times, the dispatch latency, the latest
// failed tasks with their output, and each task's last lines of output (TaskOutputs). The hour
// of counts and the failed tasks are saved under data_dir and read back at start, so they
// survive a restart. Not thread-safe: owned by the master's io_context thread.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "common/metrics_text.hpp"
#include "master/call_name.hpp"
#include "master/scheduler.hpp"
#include "master/task_output.hpp"

namespace clupy::master {

struct TelemetryConfig {
  TaskOutputLimits output;
  std::string history_file;  // "": nothing is saved or read
};

// A sample of the task counts: what happened during `interval_ms` up to `time_ms`.
struct TaskSample {
  std::int64_t time_ms = 0;  // Unix epoch
  std::uint32_t interval_ms = 0;
  std::uint64_t submitted = 0, completed = 0, failed = 0;  // during the interval
  std::uint64_t running = 0, queued = 0;                   // at its end
};

// A task that failed: a failure the master decided (crash, timeout, loss, cancellation) or an
// exception its function threw.
struct FailedTask {
  std::int64_t time_ms = 0;
  std::uint64_t job_id = 0, task_id = 0;
  std::string client, function, server, kind, type_name, message;
  std::string output;  // its last lines of output when it failed
  std::uint32_t attempts = 0;
};

class Telemetry final : public TaskObserver {
 public:
  static constexpr std::size_t kSamples = 3600;     // an hour, one a second
  static constexpr std::size_t kFailedTasks = 200;  // the latest ones are kept
  static constexpr std::size_t kFailedOutputBytes = 8192;
  static constexpr std::size_t kFunctions = 200;       // distinct names; later ones are "other"
  static constexpr std::size_t kMetricFunctions = 20;  // in /metrics, the rest as "other"

  // Reads the history file when there is one (a damaged one is logged and ignored).
  explicit Telemetry(TelemetryConfig config);

  void task_dispatched(Clock::duration waited) override;
  void task_finished(const FinishedTask& task) override;
  void task_output(std::uint64_t job_id, std::uint64_t task_id, bool is_stderr,
                   std::string_view text) {
    outputs_.add(job_id, task_id, is_stderr, text);
  }
  void job_ended(std::uint64_t job_id) { jobs_.erase(job_id); }

  // Takes a sample once a second has passed since the last one; saves the history every
  // kSaveEvery. `submitted_total` is the scheduler's running count.
  void tick(std::int64_t now_ms, std::uint64_t submitted_total, std::size_t running,
            std::size_t queued);
  // Writes the history file now (atomically). Failures are logged, never thrown.
  void save();

  // Job ids used before the restart are not given out again.
  std::uint64_t next_job_id() const { return next_job_id_; }
  void set_next_job_id(std::uint64_t next) { next_job_id_ = next; }

  // The dashboard's task figures: samples after `since_ms`, functions, failures (without
  // their output), per-job counts.
  nlohmann::json tasks_json(std::int64_t since_ms) const;
  nlohmann::json job_json(std::uint64_t job_id) const;
  // A task's output: what is kept of it, else what its failure record kept; null when neither.
  nlohmann::json output_json(std::uint64_t job_id, std::uint64_t task_id) const;
  const TaskOutputs& outputs() const { return outputs_; }
  const std::deque<FailedTask>& failures() const { return failures_; }
  // Prometheus text: the dispatch-latency histogram and per-function counters.
  void write_metrics(common::MetricsText& out) const;

 private:
  static constexpr std::size_t kRunBuckets = 100;  // run times from 10 us, each 1.2 x the last
  struct FunctionStats {
    std::uint64_t completed = 0, failed = 0;
    double run_seconds = 0;  // sum over tasks that ran
    std::uint64_t runs = 0;
    std::array<std::uint32_t, kRunBuckets + 1> buckets{};  // the last one: beyond
    double percentile(double q) const;
  };
  FunctionStats& function(std::string_view name);
  void load();

  TelemetryConfig config_;
  TaskOutputs outputs_;
  std::deque<TaskSample> samples_;
  std::deque<FailedTask> failures_;
  std::map<std::string, FunctionStats, std::less<>> functions_;
  CallPrefixHint call_hint_;
  struct JobCounts {
    std::uint64_t completed = 0, failed = 0;
  };
  std::map<std::uint64_t, JobCounts> jobs_;
  // Since the last sample.
  std::uint64_t completed_ = 0, failed_ = 0, submitted_seen_ = 0;
  // Since the master started; failed counts exceptions too (unlike SchedulerCounters).
  std::uint64_t completed_total_ = 0, failed_total_ = 0;
  bool started_ = false;
  std::int64_t last_sample_ms_ = 0, last_save_ms_ = 0;
  bool dirty_ = false;
  std::uint64_t next_job_id_ = 1;
  // Dispatch latency (queued to assigned), Prometheus-style cumulative at export.
  static constexpr std::array<double, 16> kLatencyBounds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  std::array<std::uint64_t, kLatencyBounds.size() + 1> latency_counts_{};
  double latency_sum_ = 0;
  std::uint64_t latency_count_ = 0;
};

}  // namespace clupy::master
