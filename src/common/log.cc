#include "common/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

#include <mutex>

#include "clupy/errors.hpp"

namespace clupy::common {
namespace {
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
spdlog::level::level_enum& current_level() {
  static spdlog::level::level_enum level = spdlog::level::info;
  return level;
}
}  // namespace

std::shared_ptr<spdlog::logger> logger(const std::string& component) {
  std::lock_guard lock(registry_mutex());
  const std::string name = "clupy." + component;
  if (auto existing = spdlog::get(name)) return existing;
  auto created =
      std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  created->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n %P] %v");
  created->set_level(current_level());
  created->flush_on(spdlog::level::info);
  spdlog::register_logger(created);
  return created;
}

spdlog::level::level_enum parse_log_level(const std::string& text) {
  static const char* kNames[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  for (int i = 0; i < 7; ++i)
    if (text == kNames[i]) return static_cast<spdlog::level::level_enum>(i);
  throw ConfigError("bad log level '" + text +
                    "' (expected trace, debug, info, warn, error, critical or off)");
}

void set_log_level(spdlog::level::level_enum level) {
  std::lock_guard lock(registry_mutex());
  current_level() = level;
  spdlog::apply_all([level](const std::shared_ptr<spdlog::logger>& l) {
    if (l->name().rfind("clupy.", 0) == 0) l->set_level(level);
  });
}

namespace {
bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }
}  // namespace

std::string printable(std::string_view text, std::size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::string_view shown = text.substr(0, max_bytes);
  std::string out;
  out.reserve(shown.size() + 16);
  for (const char ch : shown) {
    const auto c = static_cast<unsigned char>(ch);
    if (is_control(c)) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;
    }
  }
  if (shown.size() < text.size()) out += "...(" + std::to_string(text.size()) + " bytes)";
  return out;
}

bool is_printable(std::string_view text, std::size_t max_bytes) {
  if (text.size() > max_bytes) return false;
  for (const char ch : text)
    if (is_control(static_cast<unsigned char>(ch))) return false;
  return true;
}

}  // namespace clupy::common
