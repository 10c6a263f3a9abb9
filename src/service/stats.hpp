// What a service's front counts: per entry point requests, errors by status and a latency
// histogram; requests in flight; replica restarts. Read by /status, /metrics and
// `clupy services`. Not thread-safe: the front's io_context thread owns it.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "common/metrics_text.hpp"

namespace clupy::services {

// Upper bounds (seconds) of the latency histogram's buckets; the last bucket is +Inf.
inline constexpr std::array<double, 18> kLatencyBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0, 30.0,  60.0};

struct EntryStats {
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;                                         // answers other than 200
  std::map<int, std::uint64_t> by_status;                           // HTTP status -> answers
  std::array<std::uint64_t, kLatencyBuckets.size() + 1> buckets{};  // not cumulative
  double latency_sum_seconds = 0;

  // The latency below which `quantile` (0..1) of the answers fell, interpolated inside its
  // bucket; 0 with no answers.
  double percentile(double quantile) const;
};

class ServiceStats {
 public:
  using Clock = std::chrono::steady_clock;

  void record(const std::string& entry, int status, Clock::duration latency, Clock::time_point now);
  void started() { ++in_flight_; }
  void finished() { --in_flight_; }
  void replica_restarted() { ++replica_restarts_; }

  const std::map<std::string, EntryStats>& entries() const { return entries_; }
  EntryStats total() const;
  std::int64_t in_flight() const { return in_flight_; }
  std::uint64_t replica_restarts() const { return replica_restarts_; }
  // Answers per second over the last 10 seconds.
  double rate(Clock::time_point now) const;

  // These counters in the Prometheus text, each series labelled service="<service>".
  void write_metrics(const std::string& service, common::MetricsText& out) const;

 private:
  std::map<std::string, EntryStats> entries_;
  std::int64_t in_flight_ = 0;
  std::uint64_t replica_restarts_ = 0;
  std::array<std::uint64_t, 10> per_second_{};
  std::int64_t last_second_ = 0;
};

}  // namespace clupy::services
