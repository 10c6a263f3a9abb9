#include "master/telemetry.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "clupy/detail/call.hpp"
#include "common/log.hpp"
#include "common/task_result.hpp"
#include "master/call_name.hpp"

namespace clupy::master {

namespace {

auto log() { return common::logger("master"); }

constexpr std::int64_t kSaveEveryMs = 5'000;
constexpr std::int64_t kHourMs = 3'600'000;
constexpr double kFirstBucket = 10e-6;  // seconds
constexpr double kBucketRatio = 1.2;

// A view into `call` or `fallback`.
std::string_view function_name_of(const std::string& call, std::string& fallback,
                                  CallPrefixHint& hint) {
  if (call.empty()) return "(unknown)";
  try {
    const std::string_view name = call_function_name(call, fallback, &hint);
    return name.empty() ? "(unnamed)" : name;
  } catch (const std::exception&) {
    return "(undecodable)";
  }
}

}  // namespace

Telemetry::Telemetry(TelemetryConfig config)
    : config_(std::move(config)), outputs_(config_.output) {
  load();
}

Telemetry::FunctionStats& Telemetry::function(std::string_view name) {
  auto it = functions_.find(name);
  if (it != functions_.end()) return it->second;
  if (functions_.size() >= kFunctions) return functions_["other"];
  return functions_[std::string(name)];
}

double Telemetry::FunctionStats::percentile(double q) const {
  std::uint64_t total = 0;
  for (auto count : buckets) total += count;
  if (total == 0) return 0;
  const auto wanted = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    seen += buckets[i];
    if (seen >= wanted) return kFirstBucket * std::pow(kBucketRatio, static_cast<double>(i));
  }
  return kFirstBucket * std::pow(kBucketRatio, static_cast<double>(kRunBuckets));
}

void Telemetry::task_dispatched(Clock::duration waited) {
  const double seconds = std::chrono::duration<double>(waited).count();
  std::size_t bucket = 0;
  while (bucket < kLatencyBounds.size() && seconds > kLatencyBounds[bucket]) ++bucket;
  ++latency_counts_[bucket];
  latency_sum_ += seconds;
  ++latency_count_;
}

void Telemetry::task_finished(const FinishedTask& task) {
  // A result that carries the worker's outcome may still be an exception the function threw.
  bool failed = task.result.outcome().empty() && !task.result.has_held();
  if (!failed && !task.result.has_held()) {
    try {
      failed = !outcome_is_value(task.result.outcome());
    } catch (const std::exception&) {
      // Not an outcome this build reads: counted as completed; the client will decide.
    }
  }
  std::string fallback;
  const std::string_view name = !task.function_name.empty()
                                    ? task.function_name
                                    : function_name_of(task.call, fallback, call_hint_);
  FunctionStats& stats = function(name);
  ++(failed ? stats.failed : stats.completed);
  ++(failed ? failed_ : completed_);
  ++(failed ? failed_total_ : completed_total_);
  if (task.job_id != 0) {
    JobCounts& job = jobs_[task.job_id];
    ++(failed ? job.failed : job.completed);
  }
  if (task.ran > Clock::duration::zero()) {
    const double seconds = std::chrono::duration<double>(task.ran).count();
    stats.run_seconds += seconds;
    ++stats.runs;
    // The first bucket whose upper bound holds it (a search, not a logarithm: this runs for
    // every task).
    static const auto bounds = [] {
      std::array<double, kRunBuckets> b{};
      for (std::size_t i = 0; i < kRunBuckets; ++i)
        b[i] = kFirstBucket * std::pow(kBucketRatio, static_cast<double>(i));
      return b;
    }();
    ++stats.buckets[static_cast<std::size_t>(
        std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin())];
  }
  if (!failed) return;

  FailedTask record;
  record.time_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  record.job_id = task.job_id;
  record.task_id = task.client_task_id;
  record.client = task.client_name;
  record.function = std::string(name);
  record.server = task.server_id;
  record.attempts = task.result.attempts();
  const Failure failure = common::read_task_result(task.result).failure;
  record.kind = std::string(to_string(failure.kind));
  record.type_name = failure.type_name;
  record.message = failure.message;
  if (record.server.empty()) record.server = failure.server;
  if (record.message.size() > 4096) record.message.resize(4096);
  if (auto kept = outputs_.find(task.job_id, task.client_task_id); kept && task.job_id != 0)
    record.output = TaskOutputs::as_text(kept->second, kFailedOutputBytes);
  failures_.push_back(std::move(record));
  while (failures_.size() > kFailedTasks) failures_.pop_front();
  dirty_ = true;
}

void Telemetry::tick(std::int64_t now_ms, std::uint64_t submitted_total, std::size_t running,
                     std::size_t queued) {
  if (!started_) {
    // The first sample covers the time since now; what came before (the scheduler counts
    // from 0 at the master's start) is in it too.
    started_ = true;
    last_sample_ms_ = now_ms;
    last_save_ms_ = now_ms;
    return;
  }
  if (now_ms - last_sample_ms_ >= 950) {  // the maintenance timer may fire a little early
    TaskSample sample;
    sample.time_ms = now_ms;
    sample.interval_ms = static_cast<std::uint32_t>(now_ms - last_sample_ms_);
    sample.submitted = submitted_total - submitted_seen_;
    sample.completed = completed_;
    sample.failed = failed_;
    sample.running = running;
    sample.queued = queued;
    samples_.push_back(sample);
    while (samples_.size() > kSamples || samples_.front().time_ms < now_ms - kHourMs)
      samples_.pop_front();
    submitted_seen_ = submitted_total;
    completed_ = failed_ = 0;
    last_sample_ms_ = now_ms;
    dirty_ = true;
  }
  if (now_ms - last_save_ms_ >= kSaveEveryMs && dirty_) {
    save();
    last_save_ms_ = now_ms;
  }
}

namespace {

nlohmann::json failure_json(const FailedTask& f, bool with_output) {
  nlohmann::json out = {{"time_ms", f.time_ms},
                        {"job_id", f.job_id},
                        {"task_id", f.task_id},
                        {"client", f.client},
                        {"function", f.function},
                        {"server", f.server},
                        {"kind", f.kind},
                        {"type_name", f.type_name},
                        {"message", f.message},
                        {"attempts", f.attempts},
                        {"has_output", !f.output.empty()}};
  if (with_output) out["output"] = f.output;
  return out;
}

}  // namespace

nlohmann::json Telemetry::tasks_json(std::int64_t since_ms) const {
  nlohmann::json samples = nlohmann::json::array();
  for (const auto& s : samples_)
    if (s.time_ms > since_ms)
      samples.push_back(
          {s.time_ms, s.interval_ms, s.submitted, s.completed, s.failed, s.running, s.queued});
  nlohmann::json functions = nlohmann::json::array();
  for (const auto& [name, stats] : functions_)
    functions.push_back(
        {{"function", name},
         {"completed", stats.completed},
         {"failed", stats.failed},
         {"mean_ms", stats.runs ? 1000 * stats.run_seconds / static_cast<double>(stats.runs) : 0},
         {"p99_ms", 1000 * stats.percentile(0.99)}});
  nlohmann::json failures = nlohmann::json::array();
  for (auto it = failures_.rbegin(); it != failures_.rend(); ++it)
    failures.push_back(failure_json(*it, false));
  return {{"samples_fields",
           {"time_ms", "interval_ms", "submitted", "completed", "failed", "running", "queued"}},
          {"samples", samples},
          {"functions", functions},
          {"failures", failures},
          {"completed_total", completed_total_},
          {"failed_total", failed_total_},
          {"output_bytes", outputs_.bytes()},
          {"output_tasks", outputs_.tasks()}};
}

nlohmann::json Telemetry::job_json(std::uint64_t job_id) const {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return {{"completed", 0}, {"failed", 0}};
  return {{"completed", it->second.completed}, {"failed", it->second.failed}};
}

nlohmann::json Telemetry::output_json(std::uint64_t job_id, std::uint64_t task_id) const {
  if (auto kept = outputs_.find(job_id, task_id)) {
    nlohmann::json lines = nlohmann::json::array();
    for (const auto& line : kept->second.lines)
      lines.push_back({{"stderr", line.is_stderr}, {"text", line.text}});
    return {{"job_id", kept->first.first},
            {"task_id", kept->first.second},
            {"truncated", kept->second.truncated},
            {"lines", lines}};
  }
  for (auto it = failures_.rbegin(); it != failures_.rend(); ++it) {
    if (it->task_id != task_id || (job_id != 0 && it->job_id != job_id)) continue;
    nlohmann::json lines = nlohmann::json::array();
    std::string_view text = it->output;
    while (!text.empty()) {
      const std::size_t end = text.find('\n');
      std::string_view line = text.substr(0, end);
      const bool is_stderr = line.starts_with("[stderr] ");
      if (is_stderr) line.remove_prefix(9);
      lines.push_back({{"stderr", is_stderr}, {"text", std::string(line)}});
      if (end == std::string_view::npos) break;
      text.remove_prefix(end + 1);
    }
    return {
        {"job_id", it->job_id}, {"task_id", it->task_id}, {"truncated", false}, {"lines", lines}};
  }
  return nullptr;
}

void Telemetry::write_metrics(common::MetricsText& out) const {
  out.family("clupy_dispatch_latency_seconds", "histogram",
             "Time tasks waited in the master's queue before being assigned to a server.");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < kLatencyBounds.size(); ++i) {
    cumulative += latency_counts_[i];
    out.sample("clupy_dispatch_latency_seconds_bucket",
               {{"le", common::metric_number(kLatencyBounds[i])}}, static_cast<double>(cumulative));
  }
  out.sample("clupy_dispatch_latency_seconds_bucket", {{"le", "+Inf"}},
             static_cast<double>(latency_count_));
  out.sample("clupy_dispatch_latency_seconds_sum", {}, latency_sum_);
  out.sample("clupy_dispatch_latency_seconds_count", {}, static_cast<double>(latency_count_));

  // The busiest functions by name, the rest summed as "other": the label's values stay few.
  std::vector<std::pair<std::uint64_t, const std::string*>> busiest;
  for (const auto& [name, stats] : functions_)
    busiest.emplace_back(stats.completed + stats.failed, &name);
  std::sort(busiest.begin(), busiest.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  std::map<std::string, FunctionStats> shown;
  for (std::size_t i = 0; i < busiest.size(); ++i) {
    const FunctionStats& stats = functions_.at(*busiest[i].second);
    FunctionStats& into = shown[i < kMetricFunctions ? *busiest[i].second : "other"];
    into.completed += stats.completed;
    into.failed += stats.failed;
    into.run_seconds += stats.run_seconds;
    into.runs += stats.runs;
  }
  out.family("clupy_function_tasks_total", "counter",
             "Finished tasks by function (the busiest " + std::to_string(kMetricFunctions) +
                 ", the rest as \"other\") and result.");
  for (const auto& [name, stats] : shown) {
    out.sample("clupy_function_tasks_total", {{"function", name}, {"result", "completed"}},
               static_cast<double>(stats.completed));
    out.sample("clupy_function_tasks_total", {{"function", name}, {"result", "failed"}},
               static_cast<double>(stats.failed));
  }
  out.family("clupy_function_run_seconds", "summary",
             "Run time of tasks by function, from assignment to result.");
  for (const auto& [name, stats] : shown) {
    out.sample("clupy_function_run_seconds_sum", {{"function", name}}, stats.run_seconds);
    out.sample("clupy_function_run_seconds_count", {{"function", name}},
               static_cast<double>(stats.runs));
  }
}

void Telemetry::save() {
  if (config_.history_file.empty()) return;
  nlohmann::json samples = nlohmann::json::array();
  for (const auto& s : samples_)
    samples.push_back(
        {s.time_ms, s.interval_ms, s.submitted, s.completed, s.failed, s.running, s.queued});
  nlohmann::json failures = nlohmann::json::array();
  for (const auto& f : failures_) {
    nlohmann::json record = failure_json(f, true);
    record.erase("has_output");
    failures.push_back(std::move(record));
  }
  const nlohmann::json history = {
      {"format", 1}, {"next_job_id", next_job_id_}, {"samples", samples}, {"failures", failures}};
  try {
    const std::filesystem::path path(config_.history_file);
    std::filesystem::create_directories(path.parent_path());
    const std::filesystem::path tmp = path.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << history.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      if (!out.flush()) throw std::runtime_error("cannot write " + tmp.string());
    }
    std::filesystem::rename(tmp, path);
    dirty_ = false;
  } catch (const std::exception& e) {
    log()->warn("dashboard history not saved: {}", e.what());
  }
}

void Telemetry::load() {
  if (config_.history_file.empty() || !std::filesystem::exists(config_.history_file)) return;
  try {
    std::ifstream in(config_.history_file);
    const nlohmann::json history = nlohmann::json::parse(in);
    if (history.value("format", 0) != 1) throw std::runtime_error("unknown format");
    next_job_id_ = history.value("next_job_id", std::uint64_t{1});
    const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
    for (const auto& s : history.at("samples")) {
      TaskSample sample{s.at(0).get<std::int64_t>(),  s.at(1).get<std::uint32_t>(),
                        s.at(2).get<std::uint64_t>(), s.at(3).get<std::uint64_t>(),
                        s.at(4).get<std::uint64_t>(), s.at(5).get<std::uint64_t>(),
                        s.at(6).get<std::uint64_t>()};
      if (sample.time_ms >= now_ms - kHourMs) samples_.push_back(sample);
    }
    while (samples_.size() > kSamples) samples_.pop_front();
    for (const auto& f : history.at("failures")) {
      FailedTask record;
      record.time_ms = f.at("time_ms").get<std::int64_t>();
      record.job_id = f.at("job_id").get<std::uint64_t>();
      record.task_id = f.at("task_id").get<std::uint64_t>();
      record.client = f.at("client").get<std::string>();
      record.function = f.at("function").get<std::string>();
      record.server = f.at("server").get<std::string>();
      record.kind = f.at("kind").get<std::string>();
      record.type_name = f.at("type_name").get<std::string>();
      record.message = f.at("message").get<std::string>();
      record.output = f.at("output").get<std::string>();
      record.attempts = f.at("attempts").get<std::uint32_t>();
      failures_.push_back(std::move(record));
    }
    while (failures_.size() > kFailedTasks) failures_.pop_front();
    log()->info("dashboard history: {} sample(s) and {} failed task(s) from {}", samples_.size(),
                failures_.size(), config_.history_file);
  } catch (const std::exception& e) {
    samples_.clear();
    failures_.clear();
    log()->warn("dashboard history {} ignored: {}", config_.history_file, e.what());
  }
}

}  // namespace clupy::master
