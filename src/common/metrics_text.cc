#include "common/metrics_text.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>

namespace clupy::common {

std::string metric_label_value(std::string_view value) {
  std::string out;
  for (char c : value.substr(0, 200)) {
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out;
}

std::string metric_number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char digits[64];
  if (std::trunc(value) == value && std::fabs(value) < 9007199254740992.0) {  // 2^53: exact
    const auto written =
        std::to_chars(digits, digits + sizeof digits, static_cast<std::int64_t>(value));
    return std::string(digits, written.ptr);
  }
  const auto written =
      std::to_chars(digits, digits + sizeof digits, value, std::chars_format::general);
  return std::string(digits, written.ptr);
}

void MetricsText::family(std::string_view name, std::string_view type, std::string_view help) {
  text_.append("# HELP ").append(name).append(" ").append(help).append("\n");
  text_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void MetricsText::sample(std::string_view name, MetricLabels labels, double value) {
  text_.append(name);
  if (labels.size() > 0) {
    char separator = '{';
    for (const auto& [label, label_value] : labels) {
      text_ += separator;
      text_.append(label).append("=\"").append(metric_label_value(label_value)).append("\"");
      separator = ',';
    }
    text_ += '}';
  }
  text_.append(" ").append(metric_number(value)).append("\n");
}

void MetricsText::single(std::string_view name, std::string_view type, std::string_view help,
                         double value) {
  family(name, type, help);
  sample(name, {}, value);
}

}  // namespace clupy::common
