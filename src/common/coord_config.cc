#include "common/coord_config.hpp"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <utility>

#include "clupy/errors.hpp"
#include "common/config.hpp"
#include "common/config_keys.hpp"

namespace clupy::common {
namespace {

constexpr int kDefaultZkPort = 2181;
constexpr std::chrono::milliseconds kMinSessionTimeout{1'000};
constexpr std::chrono::milliseconds kMaxSessionTimeout{600'000};

std::chrono::milliseconds positive_duration(const std::string& text) {
  auto value = parse_duration(text);
  if (value.count() <= 0) throw ConfigError("must be a positive duration, got '" + text + "'");
  return value;
}

void parse_mapping(const YAML::Node& map, const std::string& source, CoordinationSection& out) {
  KeyTable table(source, "coordination");
  table.add("connect",
            scalar_key([&](const std::string& v) { out.connect = normalize_zk_connect(v); }));
  table.add("session_timeout", scalar_key([&](const std::string& v) {
              auto timeout = positive_duration(v);
              if (timeout < kMinSessionTimeout || timeout > kMaxSessionTimeout)
                throw ConfigError("must be between 1s and 10m, got '" + v + "'");
              out.session_timeout = timeout;
            }));
  table.add("connect_timeout",
            scalar_key([&](const std::string& v) { out.connect_timeout = positive_duration(v); }));
  table.add("digest_auth", scalar_key([&](const std::string& v) {
              const auto colon = v.find(':');
              if (colon == std::string::npos || colon == 0)
                throw ConfigError("expected user:password");
              out.digest_auth = v;
            }));
  table.add("election_path", scalar_key([&](const std::string& v) {
              check_zk_path(v);
              if (v == "/") throw ConfigError("must not be the root of the chroot");
              out.election_path = v;
            }));
  table.add("advertise", scalar_key([&](const std::string& v) {
              if (v.find_first_of(" /:") != std::string::npos && v.front() != '[')
                throw ConfigError("expected a host name or address (no port, no scheme), got '" +
                                  v + "'");
              out.advertise = v;
            }));
  table.apply(map);
}

}  // namespace

void parse_coordination_section(const YAML::Node& node, const std::string& source,
                                CoordinationSection& out) {
  try {
    if (node.IsScalar() &&
        (node.Scalar() == "off" || node.Scalar() == "false" || node.Scalar() == "no")) {
      out.enabled = false;
      return;
    }
    if (!node.IsMap())
      throw located_error(source, node, "coordination",
                          "expected a mapping of key: value such as {connect: "
                          "zk1:2181,zk2:2181/clupy} ('{}' for all defaults), or 'off'");
    CoordinationSection parsed = out;
    parsed.enabled = true;
    parse_mapping(node, source, parsed);
    out = std::move(parsed);
  } catch (const YAML::Exception& e) {
    throw located_error(source, node, "coordination", e.msg);
  }
}

std::string normalize_zk_connect(const std::string& connect) {
  const auto slash = connect.find('/');
  const std::string hosts = connect.substr(0, slash);
  std::string chroot = slash == std::string::npos ? "" : connect.substr(slash);
  if (hosts.empty())
    throw ConfigError("no ZooKeeper host in '" + connect + "' (expected host:port[,...][/chroot])");
  if (chroot == "/") chroot.clear();
  if (!chroot.empty()) {
    try {
      check_zk_path(chroot);
    } catch (const ConfigError& e) {
      throw ConfigError("bad chroot in '" + connect + "': " + e.what());
    }
  }
  std::string out;
  std::size_t start = 0;
  while (start <= hosts.size()) {
    const auto comma = std::min(hosts.find(',', start), hosts.size());
    const std::string entry = hosts.substr(start, comma - start);
    start = comma + 1;
    std::string host = entry;
    std::string port_text;
    if (!entry.empty() && entry.front() == '[') {
      const auto close = entry.find(']');
      if (close == std::string::npos) throw ConfigError("unterminated '[' in '" + entry + "'");
      host = entry.substr(0, close + 1);
      if (close + 1 < entry.size()) {
        if (entry[close + 1] != ':') throw ConfigError("garbage after ']' in '" + entry + "'");
        port_text = entry.substr(close + 2);
        if (port_text.empty()) throw ConfigError("empty port in '" + entry + "'");
      }
    } else if (const auto colon = entry.find(':'); colon != std::string::npos) {
      host = entry.substr(0, colon);
      port_text = entry.substr(colon + 1);
      if (port_text.empty()) throw ConfigError("empty port in '" + entry + "'");
    }
    if (host.empty() || host == "[]")
      throw ConfigError("empty host in '" + connect + "' (expected host:port[,...][/chroot])");
    if (host.find_first_of(" \t") != std::string::npos)
      throw ConfigError("bad host '" + host + "' in '" + connect + "'");
    int port = kDefaultZkPort;
    if (!port_text.empty()) {
      auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
      if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 ||
          port > 65535)
        throw ConfigError("port of '" + entry + "' must be a number from 1 to 65535");
    }
    out += (out.empty() ? "" : ",") + host + ":" + std::to_string(port);
    if (comma == hosts.size()) break;
  }
  return out + chroot;
}

void check_zk_path(const std::string& path) {
  if (path.empty() || path.front() != '/')
    throw ConfigError("'" + path + "' is not an absolute path");
  if (path == "/") return;
  if (path.back() == '/') throw ConfigError("'" + path + "' ends with '/'");
  std::size_t start = 1;
  while (start <= path.size()) {
    const auto slash = std::min(path.find('/', start), path.size());
    const std::string part = path.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..")
      throw ConfigError("'" + path + "' has an empty, '.' or '..' component");
    for (const char c : part)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        throw ConfigError("'" + path + "' has a control character");
    start = slash + 1;
  }
}

}  // namespace clupy::common
