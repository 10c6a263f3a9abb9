// The worker's side of the coordination link: the environment a server gives its workers.
#include <charconv>
#include <cstdlib>
#include <string_view>

#include "coord/cluster_link.hpp"

namespace clupy::detail {

std::optional<coord::SessionOptions> coordination_options_from(const std::string& connect,
                                                               std::uint32_t session_timeout_ms,
                                                               const std::string& digest_auth) {
  if (connect.empty()) return std::nullopt;
  coord::SessionOptions options;
  options.connect = connect;
  if (session_timeout_ms > 0)
    options.session_timeout = std::chrono::milliseconds(session_timeout_ms);
  options.digest_auth = digest_auth;
  return options;
}

std::optional<coord::SessionOptions> coordination_options_from_env() {
  const char* connect = std::getenv(kCoordConnectVariable);
  if (connect == nullptr || *connect == '\0') return std::nullopt;
  std::uint32_t timeout_ms = 0;
  if (const char* text = std::getenv(kCoordSessionTimeoutVariable);
      text != nullptr && *text != '\0') {
    const std::string_view v(text);
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), timeout_ms);
    if (ec != std::errc() || end != v.data() + v.size() || timeout_ms == 0)
      throw CoordError(CoordError::Kind::kBadArgument, "",
                       std::string(kCoordSessionTimeoutVariable) +
                           " must be a positive number of milliseconds, got '" + text + "'");
  }
  const char* digest = std::getenv(kCoordDigestVariable);
  return coordination_options_from(connect, timeout_ms, digest != nullptr ? digest : "");
}

std::vector<std::string> coordination_environment(const coord::SessionOptions& options) {
  return {std::string(kCoordConnectVariable) + "=" + options.connect,
          std::string(kCoordSessionTimeoutVariable) + "=" +
              std::to_string(options.session_timeout.count()),
          std::string(kCoordDigestVariable) + "=" + options.digest_auth};
}

}  // namespace clupy::detail
