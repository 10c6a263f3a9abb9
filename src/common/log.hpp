// One spdlog logger per component ("master", "server", "client", "net", "config"), all writing
// to stderr with the same pattern; the level is set once for the process.
#pragma once

#include <spdlog/spdlog.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace clupy::common {

// Returns the component's logger, creating it on first use.
std::shared_ptr<spdlog::logger> logger(const std::string& component);

// Parses trace|debug|info|warn|error|critical|off; throws clupy::ConfigError otherwise.
spdlog::level::level_enum parse_log_level(const std::string& text);

// Sets the level of every existing and future CluPy logger.
void set_log_level(spdlog::level::level_enum level);

// A peer's text (a name, a host) made safe to log or show: control characters (newlines, ANSI
// escapes) written as \xNN, cut to `max_bytes` of input with the full length
// noted, so a peer can neither forge log lines nor flood the log.
std::string printable(std::string_view text, std::size_t max_bytes = 256);
// True when `text` is at most `max_bytes` long and has no control characters.
bool is_printable(std::string_view text, std::size_t max_bytes = 256);

}  // namespace clupy::common
