#include "common/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <vector>

#include "clupy/errors.hpp"
#include "common/config_keys.hpp"
#include "common/log.hpp"
#include "common/master_locator.hpp"
#include "common/url.hpp"

namespace clupy::common {
namespace {

KeyTable::Handler log_level_key(std::string& out) {
  return [&out](const YAML::Node& n) {
    out = scalar(n);
    parse_log_level(out);
  };
}

KeyTable::Handler http_auth_key(HttpAuth& out) {
  return [&out](const YAML::Node& node) {
    const std::string value = scalar(node);
    if (value == "loopback")
      out = HttpAuth::kLoopback;
    else if (value == "token")
      out = HttpAuth::kToken;
    else if (value == "off")
      out = HttpAuth::kOff;
    else
      throw ConfigError("expected loopback, token or off, got '" + value + "'");
  };
}

KeyTable::Handler url_key(std::string& out) {
  return [&out](const YAML::Node& n) {
    out = scalar(n);
    if (is_zk_url(out))
      parse_zk_url(out);
    else
      parse_master_url(out);
  };
}

// Sections parsed by their own modules, whose errors already carry file, line and key.
template <class Section, class Parse>
KeyTable::Handler section_key(const std::string& source, Section& out, Parse parse) {
  return [&source, &out, parse](const YAML::Node& n) {
    try {
      parse(n, source, out);
    } catch (const ConfigError& e) {
      throw LocatedConfigError(e.what());
    }
  };
}

KeyTable::Handler labels_key(std::map<std::string, std::string>& out) {
  return [&out](const YAML::Node& n) {
    if (!n.IsMap()) throw ConfigError("expected a mapping of label: value");
    for (const auto& entry : n) out[entry.first.Scalar()] = scalar(entry.second);
  };
}

KeyTable::Handler tls_key(const std::string& source, TlsConfig& out) {
  return [&source, &out](const YAML::Node& n) {
    KeyTable table(source, "tls");
    table.add("enabled", bool_key(out.enabled));
    table.add("cert_file", string_key(out.cert_file));
    table.add("key_file", string_key(out.key_file));
    table.add("ca_file", string_key(out.ca_file));
    table.apply(n);
  };
}

YAML::Node load_yaml(const std::string& yaml, const std::string& source_name) {
  try {
    YAML::Node root = YAML::Load(yaml);
    return root;
  } catch (const YAML::Exception& e) {
    throw ConfigError(source_name + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
}

template <class Config>
Config parse_with(const std::string& yaml, const std::string& source_name,
                  const std::function<void(KeyTable&, Config&)>& describe) {
  Config config;
  YAML::Node root = load_yaml(yaml, source_name);
  if (root.IsNull()) return config;  // an empty file means all defaults
  KeyTable table(source_name, "");
  describe(table, config);
  table.apply(root);
  return config;
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read configuration file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <class Config>
Config load_with(const std::string& path, const char* default_name,
                 Config (*parse)(const std::string&, const std::string&)) {
  if (!path.empty()) return parse(read_whole_file(path), path);
  if (std::filesystem::exists(default_name))
    return parse(read_whole_file(default_name), default_name);
  return Config{};
}

}  // namespace

MasterConfig parse_master_config(const std::string& yaml, const std::string& source_name) {
  return parse_with<MasterConfig>(yaml, source_name, [&](KeyTable& t, MasterConfig& c) {
    t.add("bind", string_key(c.bind));
    t.add("port", int_key(c.port, 0, 65535));
    t.add("port_file", string_key(c.port_file));
    t.add("token_file", string_key(c.token_file));
    t.add("allow_no_auth", bool_key(c.allow_no_auth));
    t.add("data_dir", string_key(c.data_dir));
    t.add("dependency_file", string_key(c.dependency_file));
    t.add("http_port", int_key(c.http_port, 0, 65535));
    t.add("registration_ttl", duration_key(c.registration_ttl));
    t.add("reservation_ttl", duration_key(c.reservation_ttl));
    t.add("maintenance_period", duration_key(c.maintenance_period));
    t.add("default_server_request_count", int_key(c.default_server_request_count, 0, 1 << 20));
    t.add("handshake_timeout", duration_key(c.handshake_timeout));
    t.add("max_pending_connections", int_key(c.max_pending_connections, 1, 1 << 20));
    t.add("idle_timeout", [&c](const YAML::Node& node) {
      const std::string value = scalar(node);
      c.idle_timeout = value == "off" || value == "0" ? Millis(0) : parse_duration(value);
    });
    t.add("http_auth", http_auth_key(c.http_auth));
    t.add("image_store_size", size_key(c.image_store_size));
    t.add("client_window", int_key(c.client_window, 1, 1 << 24));
    t.add("task_output_lines", int_key(c.task_output_lines, 0, 100'000));
    t.add("task_output_tasks_per_job", int_key(c.task_output_tasks_per_job, 1, 1 << 24));
    t.add("task_output_bytes", size_key(c.task_output_bytes));
    t.add("default_retries", int_key(c.default_retries, 0, 1000));
    t.add("assign_ahead", int_key(c.assign_ahead, 1, 1024));
    t.add("max_frame_size", size_key(c.max_frame_size));
    t.add("result_threshold", size_key(c.result_threshold));
    t.add("push_threshold", size_key(c.push_threshold));
    t.add("lineage_memory", size_key(c.lineage_memory));
    t.add("log_level", log_level_key(c.log_level));
    t.add("tls", tls_key(t.source(), c.tls));
    t.add("store", section_key(t.source(), c.store, &parse_store_section));
    t.add("coordination", section_key(t.source(), c.coordination, &parse_coordination_section));
  });
}

ServerConfig parse_server_config(const std::string& yaml, const std::string& source_name) {
  return parse_with<ServerConfig>(yaml, source_name, [&](KeyTable& t, ServerConfig& c) {
    t.add("master_url", url_key(c.master_url));
    t.add("port", int_key(c.port, 0, 65535));
    t.add("server_id", string_key(c.server_id));
    t.add("capacity", int_key(c.capacity, 0, 4096));
    t.add("cache_dir", string_key(c.cache_dir));
    t.add("coordination", section_key(t.source(), c.coordination, &parse_coordination_section));
    t.add("labels", labels_key(c.labels));
    t.add("registration_interval", duration_key(c.registration_interval));
    t.add("failure_retry_interval", duration_key(c.failure_retry_interval));
    t.add("token_file", string_key(c.token_file));
    t.add("max_frame_size", size_key(c.max_frame_size));
    t.add("log_level", log_level_key(c.log_level));
    t.add("tls", tls_key(t.source(), c.tls));
    t.add("http_port", int_key(c.http_port, 0, 65535));
    t.add("http_bind", string_key(c.http_bind));
    t.add("http_auth", http_auth_key(c.http_auth));
    t.add("dependency_recheck_period", [&c](const YAML::Node& node) {
      const std::string value = scalar(node);
      c.dependency_recheck_period =
          value == "off" || value == "0" ? Millis(0) : parse_duration(value);
    });
    t.add("data_port", [&c](const YAML::Node& node) {
      const std::string value = scalar(node);
      c.data_port = value == "off" ? -1 : 0;
      if (value != "off") int_key(c.data_port, 0, 65535)(node);
    });
    t.add("data_bind", string_key(c.data_bind));
    t.add("data_address", string_key(c.data_address));
    t.add("push_timeout", duration_key(c.push_timeout));
    t.add("handshake_timeout", duration_key(c.handshake_timeout));
    t.add("max_pending_connections", int_key(c.max_pending_connections, 1, 1 << 20));
    t.add("result_memory", size_key(c.result_memory));
    t.add("result_threshold", [&c](const YAML::Node& node) {
      std::size_t threshold = 0;
      size_key(threshold)(node);
      c.result_threshold = threshold;
    });
  });
}

ClientConfig parse_client_config(const std::string& yaml, const std::string& source_name) {
  return parse_with<ClientConfig>(yaml, source_name, [&](KeyTable& t, ClientConfig& c) {
    t.add("master_url", url_key(c.master_url));
    t.add("token_file", string_key(c.token_file));
    t.add("connect_timeout", duration_key(c.connect_timeout));
    t.add("coordination", section_key(t.source(), c.coordination, &parse_coordination_section));
    t.add("max_frame_size", size_key(c.max_frame_size));
    t.add("log_level", log_level_key(c.log_level));
    t.add("tls", tls_key(t.source(), c.tls));
    t.add("dependency_file", string_key(c.dependency_file));
    t.add("dependency_check", scalar_key([&c](const std::string& text) {
            if (text == "warn")
              c.dependency_check = DependencyCheck::kWarn;
            else if (text == "error")
              c.dependency_check = DependencyCheck::kError;
            else if (text == "off")
              c.dependency_check = DependencyCheck::kOff;
            else
              throw ConfigError("expected warn, error or off, got '" + text + "'");
          }));
  });
}

MasterConfig load_master_config(const std::string& path) {
  return load_with<MasterConfig>(path, "clupy.master.yaml", &parse_master_config);
}
ServerConfig load_server_config(const std::string& path) {
  return load_with<ServerConfig>(path, "clupy.server.yaml", &parse_server_config);
}
ClientConfig load_client_config(const std::string& path) {
  return load_with<ClientConfig>(path, "clupy.client.yaml", &parse_client_config);
}

void validate(const MasterConfig& config) {
  if (config.allow_no_auth && !is_loopback_host(config.bind))
    throw ConfigError("refusing to listen on " + config.bind +
                      " without authentication: allow_no_auth is only allowed on a loopback "
                      "address; remove allow_no_auth to use the cluster token");
  if (config.tls.enabled && (config.tls.cert_file.empty() || config.tls.key_file.empty()))
    throw ConfigError("tls.enabled on the master needs tls.cert_file and tls.key_file");
  if (config.max_frame_size < 1024) throw ConfigError("max_frame_size must be at least 1KiB");
  // Clients send a keep-alive every reservation_ttl / 3 and servers heartbeat every second (by
  // default): an idle timeout shorter than that would close healthy connections.
  if (config.idle_timeout.count() != 0 &&
      config.idle_timeout < std::max(config.reservation_ttl / 2, Millis(5'000)))
    throw ConfigError(
        "idle_timeout must be 0 (off) or at least 5s and half of reservation_ttl "
        "(clients send a keep-alive every reservation_ttl / 3)");
}

void validate(const ServerConfig& config) {
  if (is_zk_url(config.master_url))
    parse_zk_url(config.master_url);
  else
    parse_master_url(config.master_url);
  if (config.tls.enabled && config.tls.ca_file.empty())
    throw ConfigError("tls.enabled on a server needs tls.ca_file to verify the master");
  if (config.max_frame_size < 1024) throw ConfigError("max_frame_size must be at least 1KiB");
  if (!config.data_address.empty()) {
    try {
      parse_master_url(config.data_address);
    } catch (const ConfigError& e) {
      throw ConfigError("data_address must be host:port: " + std::string(e.what()));
    }
  }
  if (config.push_timeout.count() <= 0) throw ConfigError("push_timeout must be above 0");
  if (config.handshake_timeout.count() <= 0) throw ConfigError("handshake_timeout must be above 0");
}

Millis parse_duration(const std::string& text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || !std::isfinite(value) || value < 0)
    throw ConfigError("expected a duration such as 500ms, 2s or 1m, got '" + text + "'");
  const std::string unit(end, text.data() + text.size());
  double ms = 0;
  if (unit.empty() || unit == "s")
    ms = value * 1000;
  else if (unit == "ms")
    ms = value;
  else if (unit == "m")
    ms = value * 60'000;
  else if (unit == "h")
    ms = value * 3'600'000;
  else
    throw ConfigError("unknown duration unit '" + unit + "' in '" + text + "' (use ms, s, m or h)");
  return Millis(static_cast<Millis::rep>(std::llround(ms)));
}

std::size_t parse_size(const std::string& text) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc()) throw ConfigError("expected a size such as 16MiB, got '" + text + "'");
  const std::string unit(end, text.data() + text.size());
  static const std::pair<const char*, std::uint64_t> kUnits[] = {
      {"", 1},      {"B", 1},         {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30},
      {"KB", 1000}, {"MB", 1000'000}, {"GB", 1000'000'000}};
  for (const auto& [name, factor] : kUnits)
    if (unit == name) return static_cast<std::size_t>(value * factor);
  throw ConfigError("unknown size unit '" + unit + "' in '" + text + "' (use B, KiB, MiB, GiB)");
}

}  // namespace clupy::common
