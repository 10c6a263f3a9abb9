#include "service/spec.hpp"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "clupy/errors.hpp"
#include "common/config.hpp"
#include "common/config_keys.hpp"

namespace clupy::services {

namespace {

using common::KeyTable;

bool is_identifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != ':') return false;
  return true;
}

std::vector<std::string> string_list(const YAML::Node& n, const char* what) {
  if (!n.IsSequence()) throw ConfigError(std::string("expected a list of ") + what);
  std::vector<std::string> out;
  for (const auto& item : n) out.push_back(common::scalar(item));
  return out;
}

std::string resolve(const std::string& path, const std::string& base_dir) {
  if (path.empty() || path.front() == '/' || base_dir.empty()) return path;
  return (std::filesystem::path(base_dir) / path).lexically_normal().string();
}

}  // namespace

const char* auth_mode_name(AuthMode mode) {
  switch (mode) {
    case AuthMode::kToken:
      return "token";
    case AuthMode::kKey:
      return "key";
    case AuthMode::kPublic:
      return "public";
  }
  return "?";
}

ServiceSpec parse_service_spec(const std::string& yaml, const std::string& source,
                               const std::string& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw ConfigError(source + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root.IsMap()) throw ConfigError(source + ": expected a mapping of service keys");
  ServiceSpec spec;
  bool has_name = false, has_binary = false, has_entries = false;
  KeyTable table(source, "");
  table.add(
      "name", common::scalar_key([&](const std::string& v) {
        if (v.empty() || v.size() > 63 ||
            v.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") != std::string::npos)
          throw ConfigError("expected 1 to 63 of a-z, 0-9, '_' and '-', got '" + v + "'");
        spec.name = v;
        has_name = true;
      }));
  table.add("binary", common::scalar_key([&](const std::string& v) {
              if (v.empty()) throw ConfigError("expected the path of the program");
              spec.binary = resolve(v, base_dir);
              has_binary = true;
            }));
  table.add("entry_points", [&](const YAML::Node& n) {
    spec.entry_points = string_list(n, "exported function names");
    if (spec.entry_points.empty()) throw ConfigError("expected at least one entry point");
    std::set<std::string> seen;
    for (const auto& e : spec.entry_points) {
      if (!is_identifier(e)) throw ConfigError("'" + e + "' is not a function name");
      if (!seen.insert(e).second) throw ConfigError("'" + e + "' is listed twice");
      if (e == "health" || e == "ready" || e == "status" || e == "metrics" || e == "openapi.json")
        throw ConfigError("'" + e + "' is a path the front answers itself (GET /" + e +
                          "); export the function under another name");
    }
    has_entries = true;
  });
  table.add("port", common::int_key(spec.port, 0, 65535));
  table.add("bind", common::string_key(spec.bind));
  table.add("replicas", common::int_key(spec.replicas, 1, 1000));
  table.add("packages", [&](const YAML::Node& n) {
    spec.packages = string_list(n, "package names");
    for (const auto& p : spec.packages)
      if (p.empty() || p.find_first_of(" \t;|&$`'\"") != std::string::npos)
        throw ConfigError("'" + p + "' is not a package name");
  });
  table.add("max_body", common::size_key(spec.max_body));
  table.add("timeout", common::duration_key(spec.timeout));
  table.add("auth", [&](const YAML::Node& n) {
    if (n.IsMap()) {
      KeyTable auth(source, "auth");
      auth.add("key_file", common::scalar_key([&](const std::string& v) {
                 if (v.empty()) throw ConfigError("expected the path of the key file");
                 spec.key_file = resolve(v, base_dir);
               }));
      auth.apply(n);
      if (spec.key_file.empty())
        throw ConfigError("expected token, public, or a mapping with key_file");
      spec.auth = AuthMode::kKey;
      return;
    }
    const std::string v = common::scalar(n);
    if (v == "token") {
      spec.auth = AuthMode::kToken;
    } else if (v == "public") {
      spec.auth = AuthMode::kPublic;
    } else {
      throw ConfigError("expected token, public, or {key_file: PATH}, got '" + v + "'");
    }
  });
  table.apply(root);
  if (spec.max_body < 2) throw ConfigError(source + ": key 'max_body': at least 2B");
  for (const auto& [key, present] : {std::pair{"name", has_name}, std::pair{"binary", has_binary},
                                     std::pair{"entry_points", has_entries}})
    if (!present) throw ConfigError(source + ": key '" + key + "' is required (docs/services.md)");
  return spec;
}

ServiceSpec load_service_spec(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read service file " + path);
  std::stringstream text;
  text << in.rdbuf();
  const auto dir = std::filesystem::absolute(path).parent_path().string();
  return parse_service_spec(text.str(), path, dir);
}

}  // namespace clupy::services
