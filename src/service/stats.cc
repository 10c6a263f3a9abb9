#include "service/stats.hpp"

#include <algorithm>

namespace clupy::services {

namespace {

std::int64_t second_of(ServiceStats::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

double EntryStats::percentile(double quantile) const {
  std::uint64_t total = 0;
  for (auto n : buckets) total += n;
  if (total == 0) return 0;
  const double target = quantile * static_cast<double>(total);
  double seen = 0;
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    if (buckets[i] == 0) continue;
    if (seen + static_cast<double>(buckets[i]) >= target) {
      const double low = i == 0 ? 0 : kLatencyBuckets[i - 1];
      if (i == kLatencyBuckets.size()) return low;  // +Inf: the last finite bound
      const double high = kLatencyBuckets[i];
      return low + (high - low) * (target - seen) / static_cast<double>(buckets[i]);
    }
    seen += static_cast<double>(buckets[i]);
  }
  return kLatencyBuckets.back();
}

void ServiceStats::record(const std::string& entry, int status, Clock::duration latency,
                          Clock::time_point now) {
  EntryStats& e = entries_[entry];
  ++e.requests;
  if (status != 200) ++e.errors;
  ++e.by_status[status];
  const double seconds = std::chrono::duration<double>(latency).count();
  e.latency_sum_seconds += seconds;
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(kLatencyBuckets.begin(), kLatencyBuckets.end(), seconds) -
      kLatencyBuckets.begin());
  ++e.buckets[bucket];
  const std::int64_t second = second_of(now);
  if (second != last_second_) {
    for (std::int64_t s = std::max(last_second_ + 1, second - 9); s <= second; ++s)
      per_second_[static_cast<std::size_t>(s % 10)] = 0;
    last_second_ = second;
  }
  ++per_second_[static_cast<std::size_t>(second % 10)];
}

EntryStats ServiceStats::total() const {
  EntryStats sum;
  for (const auto& [name, e] : entries_) {
    sum.requests += e.requests;
    sum.errors += e.errors;
    for (const auto& [status, n] : e.by_status) sum.by_status[status] += n;
    for (std::size_t i = 0; i < e.buckets.size(); ++i) sum.buckets[i] += e.buckets[i];
    sum.latency_sum_seconds += e.latency_sum_seconds;
  }
  return sum;
}

double ServiceStats::rate(Clock::time_point now) const {
  // The 10 full seconds before the current one; slots older than last_second_ - 9 are stale.
  const std::int64_t second = second_of(now);
  std::uint64_t sum = 0;
  for (std::int64_t s = second - 10; s < second; ++s)
    if (s <= last_second_ && s > last_second_ - 10)
      sum += per_second_[static_cast<std::size_t>(s % 10)];
  return static_cast<double>(sum) / 10.0;
}

void ServiceStats::write_metrics(const std::string& service, common::MetricsText& out) const {
  out.family("clupy_service_requests_total", "counter",
             "Requests answered, by entry point and HTTP status.");
  for (const auto& [entry, e] : entries_)
    for (const auto& [status, n] : e.by_status)
      out.sample("clupy_service_requests_total",
                 {{"service", service}, {"entry", entry}, {"status", std::to_string(status)}},
                 static_cast<double>(n));
  out.family("clupy_service_errors_total", "counter",
             "Requests answered with a status other than 200.");
  for (const auto& [entry, e] : entries_)
    out.sample("clupy_service_errors_total", {{"service", service}, {"entry", entry}},
               static_cast<double>(e.errors));
  out.family("clupy_service_request_seconds", "histogram",
             "Time from a request's arrival to its answer.");
  for (const auto& [entry, e] : entries_) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < e.buckets.size(); ++i) {
      cumulative += e.buckets[i];
      const std::string le =
          i < kLatencyBuckets.size() ? common::metric_number(kLatencyBuckets[i]) : "+Inf";
      out.sample("clupy_service_request_seconds_bucket",
                 {{"service", service}, {"entry", entry}, {"le", le}},
                 static_cast<double>(cumulative));
    }
    out.sample("clupy_service_request_seconds_sum", {{"service", service}, {"entry", entry}},
               e.latency_sum_seconds);
    out.sample("clupy_service_request_seconds_count", {{"service", service}, {"entry", entry}},
               static_cast<double>(cumulative));
  }
  out.family("clupy_service_in_flight", "gauge", "Requests received and not yet answered.");
  out.sample("clupy_service_in_flight", {{"service", service}}, static_cast<double>(in_flight_));
  out.family("clupy_service_replica_restarts_total", "counter",
             "Replica processes that died and were replaced.");
  out.sample("clupy_service_replica_restarts_total", {{"service", service}},
             static_cast<double>(replica_restarts_));
}

}  // namespace clupy::services
