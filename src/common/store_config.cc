#include "common/store_config.hpp"

#include <yaml-cpp/yaml.h>

#include <functional>
#include <utility>
#include <vector>

#include "clupy/errors.hpp"
#include "clupy/store.hpp"
#include "common/config.hpp"
#include "store/redis.hpp"

namespace clupy::common {
namespace {

constexpr std::size_t kMinChunkSize = std::size_t{4} << 10;
constexpr std::size_t kMaxChunkSize = std::size_t{512} << 20;

// What a value is wrong with, before the place is attached.
class ValueError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string scalar(const YAML::Node& node) {
  if (!node.IsScalar()) throw ValueError("expected a single value");
  return node.Scalar();
}

// parse_duration() plus days, since idle TTLs are naturally counted in days.
std::chrono::milliseconds duration(const std::string& text) {
  try {
    if (!text.empty() && text.back() == 'd') {
      auto hours = parse_duration(text.substr(0, text.size() - 1) + "h");
      return hours * 24;
    }
    return parse_duration(text);
  } catch (const ConfigError& e) {
    throw ValueError(e.what());
  }
}

std::uint64_t size(const std::string& text) {
  try {
    return parse_size(text);
  } catch (const ConfigError& e) {
    throw ValueError(e.what());
  }
}

ConfigError located(const std::string& source, const YAML::Node& node, const std::string& key,
                    const std::string& what) {
  std::string where = source;
  if (node.Mark().line >= 0) where += ":" + std::to_string(node.Mark().line + 1);
  return ConfigError(where + ": key '" + key + "': " + what);
}

void parse_mapping(const YAML::Node& map, const std::string& source, StoreSection& out) {
  using Handler = std::function<void(const std::string&)>;
  const std::vector<std::pair<std::string, Handler>> keys = {
      {"redis",
       [&](const std::string& v) {
         if (v == "embedded") {
           out.embedded = true;
           return;
         }
         try {
           store::parse_redis_url(v);
         } catch (const StoreError& e) {
           throw ValueError(e.what());
         }
         out.embedded = false;
         out.redis = v;
       }},
      {"key_prefix",
       [&](const std::string& v) {
         if (v.empty()) throw ValueError("must not be empty (keys of other data would mix)");
         out.key_prefix = v;
       }},
      {"chunk_size",
       [&](const std::string& v) {
         const std::uint64_t n = size(v);
         if (n < kMinChunkSize || n > kMaxChunkSize)
           throw ValueError("must be between 4KiB and 512MiB, got '" + v + "'");
         out.chunk_size = static_cast<std::size_t>(n);
       }},
      {"memory_budget", [&](const std::string& v) { out.memory_budget = size(v); }},
      {"idle_ttl", [&](const std::string& v) { out.idle_ttl = duration(v); }},
      {"orphan_grace",
       [&](const std::string& v) {
         out.orphan_grace = duration(v);
         if (out.orphan_grace.count() <= 0) throw ValueError("must be a positive duration");
       }},
      {"sweep_interval",
       [&](const std::string& v) {
         out.sweep_interval = duration(v);
         if (out.sweep_interval.count() <= 0) throw ValueError("must be a positive duration");
       }},
  };
  for (const auto& entry : map) {
    const std::string key = entry.first.Scalar();
    const Handler* handler = nullptr;
    for (const auto& [name, h] : keys)
      if (name == key) handler = &h;
    if (handler == nullptr) {
      std::string known;
      for (const auto& [name, h] : keys) known += (known.empty() ? "" : ", ") + name;
      throw located(source, entry.first, "store." + key, "unknown key (known keys: " + known + ")");
    }
    try {
      (*handler)(scalar(entry.second));
    } catch (const ValueError& e) {
      throw located(source, entry.second, "store." + key, e.what());
    }
  }
}

}  // namespace

void parse_store_section(const YAML::Node& node, const std::string& source, StoreSection& out) {
  try {
    if (node.IsScalar()) {
      const std::string& v = node.Scalar();
      if (v == "embedded") {
        out.enabled = true;
        out.embedded = true;
      } else if (v == "off" || v == "false" || v == "no") {
        out.enabled = false;
      } else {
        throw located(source, node, "store",
                      "expected 'embedded', 'off' or a mapping such as {redis: "
                      "redis://host:6379/0}, got '" +
                          v + "'");
      }
      return;
    }
    if (!node.IsMap())
      throw located(source, node, "store",
                    "expected 'embedded', 'off' or a mapping of key: value ('{}' for all "
                    "defaults)");
    StoreSection parsed = out;
    parsed.enabled = true;
    parse_mapping(node, source, parsed);
    out = std::move(parsed);
  } catch (const YAML::Exception& e) {
    throw located(source, node, "store", e.msg);
  }
}

}  // namespace clupy::common
