#include "common/store_config.hpp"

#include <yaml-cpp/yaml.h>

#include <utility>

#include "clupy/errors.hpp"
#include "clupy/store.hpp"
#include "common/config.hpp"
#include "common/config_keys.hpp"

namespace clupy::common {
namespace {

constexpr std::size_t kMinChunkSize = std::size_t{4} << 10;
constexpr std::size_t kMaxChunkSize = std::size_t{512} << 20;

// parse_duration() plus days, since idle TTLs are naturally counted in days.
std::chrono::milliseconds duration(const std::string& text) {
  if (!text.empty() && text.back() == 'd')
    return parse_duration(text.substr(0, text.size() - 1) + "h") * 24;
  return parse_duration(text);
}

std::chrono::milliseconds positive_duration(const std::string& text) {
  auto value = duration(text);
  if (value.count() <= 0) throw ConfigError("must be a positive duration");
  return value;
}

void parse_mapping(const YAML::Node& map, const std::string& source, StoreSection& out) {
  KeyTable table(source, "store");
  table.add("redis", scalar_key([&](const std::string& v) {
              if (v == "embedded") {
                out.embedded = true;
                return;
              }
              // The form only: the store's URL parser (src/store, which src/common may not
              // include) reads the rest when the master starts its StoreService.
              if (!v.starts_with("redis://") && !v.starts_with("unix://"))
                throw ConfigError(
                    "expected redis://[user:password@]host[:port][/db] or "
                    "unix:///path/to/redis.sock, or embedded; got '" +
                    v + "'");
              out.embedded = false;
              out.redis = v;
            }));
  table.add("key_prefix", scalar_key([&](const std::string& v) {
              if (v.empty()) throw ConfigError("must not be empty (keys of other data would mix)");
              out.key_prefix = v;
            }));
  table.add("chunk_size", scalar_key([&](const std::string& v) {
              const std::uint64_t n = parse_size(v);
              if (n < kMinChunkSize || n > kMaxChunkSize)
                throw ConfigError("must be between 4KiB and 512MiB, got '" + v + "'");
              out.chunk_size = static_cast<std::size_t>(n);
            }));
  table.add("memory_budget",
            scalar_key([&](const std::string& v) { out.memory_budget = parse_size(v); }));
  table.add("idle_ttl", scalar_key([&](const std::string& v) { out.idle_ttl = duration(v); }));
  table.add("orphan_grace",
            scalar_key([&](const std::string& v) { out.orphan_grace = positive_duration(v); }));
  table.add("sweep_interval",
            scalar_key([&](const std::string& v) { out.sweep_interval = positive_duration(v); }));
  table.apply(map);
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
        throw located_error(source, node, "store",
                            "expected 'embedded', 'off' or a mapping such as {redis: "
                            "redis://host:6379/0}, got '" +
                                v + "'");
      }
      return;
    }
    if (!node.IsMap())
      throw located_error(source, node, "store",
                          "expected 'embedded', 'off' or a mapping of key: value ('{}' for all "
                          "defaults)");
    StoreSection parsed = out;
    parsed.enabled = true;
    parse_mapping(node, source, parsed);
    out = std::move(parsed);
  } catch (const YAML::Exception& e) {
    throw located_error(source, node, "store", e.msg);
  }
}

}  // namespace clupy::common
