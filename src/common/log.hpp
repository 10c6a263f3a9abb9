// One spdlog logger per component ("master", "server", "client", "net", "config"), all writing
// to stderr with the same pattern; the level is set once for the process.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace clupy::common {

// Returns the component's logger, creating it on first use.
std::shared_ptr<spdlog::logger> logger(const std::string& component);

// Parses trace|debug|info|warn|error|critical|off; throws clupy::ConfigError otherwise.
spdlog::level::level_enum parse_log_level(const std::string& text);

// Sets the level of every existing and future CluPy logger.
void set_log_level(spdlog::level::level_enum level);

}  // namespace clupy::common
