// The one YAML key walker behind every configuration file and section (config.cc,
// store_config.cc, coord_config.cc): known keys only, each value checked by its handler, and
// every error located as "<file>:<line>: key '<section>.<key>': <what is wrong>".
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "clupy/errors.hpp"

namespace YAML {
class Node;
}

namespace clupy::common {

// A ConfigError that already carries file, line and key; passed through nested tables untouched.
class LocatedConfigError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

// "<source>:<line>: key '<name>': <what>" (the key part left out when `name` is empty).
LocatedConfigError located_error(const std::string& source, const YAML::Node& node,
                                 const std::string& name, const std::string& what);

// Walks one YAML mapping against a table of known keys. Each key's handler converts and stores
// the value, throwing ConfigError (or a YAML exception) with what is wrong; apply() attaches the
// file, line and key. An unknown key is an error that lists the known ones.
class KeyTable {
 public:
  using Handler = std::function<void(const YAML::Node&)>;

  // `section` prefixes key names in messages ("store" gives 'store.chunk_size'); "" at top level.
  KeyTable(std::string source, std::string section)
      : source_(std::move(source)), section_(std::move(section)) {}

  void add(const std::string& key, Handler handler) {
    handlers_.emplace_back(key, std::move(handler));
  }
  // Throws LocatedConfigError.
  void apply(const YAML::Node& map) const;
  const std::string& source() const { return source_; }

 private:
  const Handler* find(const std::string& key) const;
  std::string known_keys() const;
  LocatedConfigError error(const YAML::Node& node, const std::string& key,
                           const std::string& what) const;

  std::string source_;
  std::string section_;
  std::vector<std::pair<std::string, Handler>> handlers_;
};

// The node's scalar text; ConfigError when it is a list or mapping.
std::string scalar(const YAML::Node& node);

// Handlers for common kinds of values, storing into `out` (which must outlive the table).
KeyTable::Handler string_key(std::string& out);
KeyTable::Handler bool_key(bool& out);                           // true/yes/on, false/no/off
KeyTable::Handler int_key(int& out, int min, int max);           // inclusive bounds
KeyTable::Handler duration_key(std::chrono::milliseconds& out);  // positive: 500ms, 2s, 1m, 1h
KeyTable::Handler size_key(std::size_t& out);                    // 16MiB, 4KiB, 1000
// A scalar value checked and stored by `check`.
KeyTable::Handler scalar_key(std::function<void(const std::string&)> check);

}  // namespace clupy::common
