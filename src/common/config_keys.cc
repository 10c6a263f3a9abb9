#include "common/config_keys.hpp"

#include <yaml-cpp/yaml.h>

#include <charconv>

#include "common/config.hpp"

namespace clupy::common {

LocatedConfigError located_error(const std::string& source, const YAML::Node& node,
                                 const std::string& name, const std::string& what) {
  std::string where = source;
  if (node.Mark().line >= 0) where += ":" + std::to_string(node.Mark().line + 1);
  return LocatedConfigError(where + ": " + (name.empty() ? "" : "key '" + name + "': ") + what);
}

void KeyTable::apply(const YAML::Node& map) const {
  if (!map.IsMap()) throw error(map, "", "expected a mapping of key: value");
  for (const auto& entry : map) {
    const std::string key = entry.first.Scalar();
    const Handler* handler = find(key);
    if (handler == nullptr)
      throw error(entry.first, key, "unknown key (known keys: " + known_keys() + ")");
    try {
      (*handler)(entry.second);
    } catch (const LocatedConfigError&) {
      throw;
    } catch (const ConfigError& e) {
      throw error(entry.second, key, e.what());
    } catch (const YAML::Exception& e) {
      throw error(entry.second, key, e.msg);
    }
  }
}

const KeyTable::Handler* KeyTable::find(const std::string& key) const {
  for (const auto& [name, handler] : handlers_)
    if (name == key) return &handler;
  return nullptr;
}

std::string KeyTable::known_keys() const {
  std::string out;
  for (const auto& [name, handler] : handlers_) out += (out.empty() ? "" : ", ") + name;
  return out;
}

LocatedConfigError KeyTable::error(const YAML::Node& node, const std::string& key,
                                   const std::string& what) const {
  return located_error(source_, node,
                       section_.empty() ? key : (key.empty() ? section_ : section_ + "." + key),
                       what);
}

std::string scalar(const YAML::Node& node) {
  if (!node.IsScalar()) throw ConfigError("expected a single value");
  return node.Scalar();
}

KeyTable::Handler string_key(std::string& out) {
  return [&out](const YAML::Node& n) { out = scalar(n); };
}

KeyTable::Handler bool_key(bool& out) {
  return [&out](const YAML::Node& n) {
    const std::string text = scalar(n);
    if (text == "true" || text == "yes" || text == "on")
      out = true;
    else if (text == "false" || text == "no" || text == "off")
      out = false;
    else
      throw ConfigError("expected true or false, got '" + text + "'");
  };
}

KeyTable::Handler int_key(int& out, int min, int max) {
  return [&out, min, max](const YAML::Node& n) {
    const std::string text = scalar(n);
    int value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max)
      throw ConfigError("expected an integer from " + std::to_string(min) + " to " +
                        std::to_string(max) + ", got '" + text + "'");
    out = value;
  };
}

KeyTable::Handler duration_key(std::chrono::milliseconds& out) {
  return [&out](const YAML::Node& n) {
    out = parse_duration(scalar(n));
    if (out.count() <= 0) throw ConfigError("must be a positive duration");
  };
}

KeyTable::Handler size_key(std::size_t& out) {
  return [&out](const YAML::Node& n) { out = parse_size(scalar(n)); };
}

KeyTable::Handler scalar_key(std::function<void(const std::string&)> check) {
  return [check = std::move(check)](const YAML::Node& n) { check(scalar(n)); };
}

}  // namespace clupy::common
