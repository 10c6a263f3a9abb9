#include "service/stats.hpp"

#include <algorithm>
#include <cstdio>

namespace clupy::services {

namespace {

std::int64_t second_of(ServiceStats::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", v);
  return text;
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

std::string ServiceStats::prometheus(const std::string& service) const {
  const std::string base = "service=\"" + service + "\"";
  std::string text =
      "# HELP clupy_service_requests_total Requests answered, by entry point and HTTP status.\n"
      "# TYPE clupy_service_requests_total counter\n";
  for (const auto& [entry, e] : entries_)
    for (const auto& [status, n] : e.by_status)
      text += "clupy_service_requests_total{" + base + ",entry=\"" + entry + "\",status=\"" +
              std::to_string(status) + "\"} " + std::to_string(n) + "\n";
  text +=
      "# HELP clupy_service_errors_total Requests answered with a status other than 200.\n"
      "# TYPE clupy_service_errors_total counter\n";
  for (const auto& [entry, e] : entries_)
    text += "clupy_service_errors_total{" + base + ",entry=\"" + entry + "\"} " +
            std::to_string(e.errors) + "\n";
  text +=
      "# HELP clupy_service_request_seconds Time from a request's arrival to its answer.\n"
      "# TYPE clupy_service_request_seconds histogram\n";
  for (const auto& [entry, e] : entries_) {
    const std::string labels = base + ",entry=\"" + entry + "\"";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < e.buckets.size(); ++i) {
      cumulative += e.buckets[i];
      const std::string le = i < kLatencyBuckets.size() ? number(kLatencyBuckets[i]) : "+Inf";
      text += "clupy_service_request_seconds_bucket{" + labels + ",le=\"" + le + "\"} " +
              std::to_string(cumulative) + "\n";
    }
    text +=
        "clupy_service_request_seconds_sum{" + labels + "} " + number(e.latency_sum_seconds) + "\n";
    text +=
        "clupy_service_request_seconds_count{" + labels + "} " + std::to_string(cumulative) + "\n";
  }
  text +=
      "# HELP clupy_service_in_flight Requests received and not yet answered.\n"
      "# TYPE clupy_service_in_flight gauge\n"
      "clupy_service_in_flight{" +
      base + "} " + std::to_string(in_flight_) +
      "\n"
      "# HELP clupy_service_replica_restarts_total Replica processes that died and were "
      "replaced.\n"
      "# TYPE clupy_service_replica_restarts_total counter\n"
      "clupy_service_replica_restarts_total{" +
      base + "} " + std::to_string(replica_restarts_) + "\n";
  return text;
}

}  // namespace clupy::services
