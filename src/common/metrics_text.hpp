// The Prometheus text exposition format (version 0.0.4), written one metric family at a time:
// the daemons' /metrics pages all build their text with this. Label values are escaped here
// (backslash, double quote, newline) and cut to 200 bytes, so callers pass raw names.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace clupy::common {

using MetricLabels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

class MetricsText {
 public:
  // "# HELP" and "# TYPE" lines; type is counter, gauge, histogram or summary.
  void family(std::string_view name, std::string_view type, std::string_view help);
  // One sample line of the family last opened (or of a _bucket/_sum/_count series of it).
  void sample(std::string_view name, MetricLabels labels, double value);
  // A family with one unlabelled sample.
  void single(std::string_view name, std::string_view type, std::string_view help, double value);
  std::string take() { return std::move(text_); }

 private:
  std::string text_;
};

// A label value as the format wants it between double quotes.
std::string metric_label_value(std::string_view value);

// A value as written in a sample: integers (below 2^53) in full, others in the shortest form that
// reads back exactly, in %g style (0.0005 rather than 5e-04).
std::string metric_number(double value);

}  // namespace clupy::common
