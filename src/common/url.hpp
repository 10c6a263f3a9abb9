// Master addresses: clupy://host:port (plain or TLS per configuration) and host:port.
#pragma once

#include <string>

namespace clupy::common {

inline constexpr int kDefaultMasterPort = 7878;

struct MasterAddress {
  std::string host;
  int port = kDefaultMasterPort;
  std::string to_string() const { return "clupy://" + host + ":" + std::to_string(port); }
};

// Parses "clupy://host:port", "clupy://host" (default port), "host:port" or "[::1]:port".
// Throws clupy::ConfigError naming the URL on anything else.
MasterAddress parse_master_url(const std::string& url);

// True for 127.0.0.0/8, ::1 and "localhost": addresses nothing outside this machine can reach.
bool is_loopback_host(const std::string& host);

}  // namespace clupy::common
