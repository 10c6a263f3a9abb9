#include "common/url.hpp"

#include <arpa/inet.h>

#include <charconv>

#include "clupy/errors.hpp"

namespace clupy::common {

MasterAddress parse_master_url(const std::string& url) {
  auto fail = [&](const std::string& why) -> ConfigError {
    return ConfigError("bad master URL '" + url + "': " + why +
                       " (expected clupy://host:port, e.g. clupy://localhost:7878)");
  };
  std::string rest = url;
  if (auto scheme = rest.find("://"); scheme != std::string::npos) {
    if (rest.substr(0, scheme) != "clupy")
      throw fail("unknown scheme '" + rest.substr(0, scheme) + "'");
    rest = rest.substr(scheme + 3);
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty()) throw fail("no host");
  MasterAddress address;
  std::string port_text;
  if (rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos) throw fail("unterminated '['");
    address.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') throw fail("garbage after ']'");
      port_text = rest.substr(close + 2);
    }
  } else {
    auto colon = rest.rfind(':');
    address.host = rest.substr(0, colon);
    if (colon != std::string::npos) port_text = rest.substr(colon + 1);
  }
  if (address.host.empty()) throw fail("no host");
  if (address.host.find('/') != std::string::npos) throw fail("a path is not allowed");
  if (!port_text.empty() || rest.back() == ':') {
    int port = -1;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535)
      throw fail("port must be a number from 1 to 65535");
    address.port = port;
  }
  return address;
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  return false;
}

}  // namespace clupy::common
