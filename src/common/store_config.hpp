// The `store:` section of clupy.master.yaml: where the cluster's file store lives and how the
// master's janitor keeps it tidy (docs/store.md lists every key with its default).
//
//   store: embedded                 # the master starts a private redis-server (unix socket)
//   store:
//     redis: redis://127.0.0.1:6379/0
//     key_prefix: "clupy:"
//     chunk_size: 1MiB
//     memory_budget: 8GiB
//     idle_ttl: 7d
//     orphan_grace: 15m
//     sweep_interval: 1m
//
// Without the section the cluster has no store (StoreSection::enabled is false).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace YAML {
class Node;
}

namespace clupy::common {

struct StoreSection {
  bool enabled = false;   // the master's configuration has a store: section
  bool embedded = false;  // `store: embedded` or `redis: embedded`: the master owns a redis-server
  std::string redis = "redis://127.0.0.1:6379/0";  // ignored when embedded
  std::string key_prefix = "clupy:";
  std::size_t chunk_size = std::size_t{1} << 20;
  std::uint64_t memory_budget = 0;                                  // bytes; 0: no budget
  std::chrono::milliseconds idle_ttl = std::chrono::hours(24 * 7);  // 0: files never expire
  std::chrono::milliseconds orphan_grace = std::chrono::minutes(15);
  // The janitor sweeps at most this often (a sweep reads every file's metadata).
  std::chrono::milliseconds sweep_interval = std::chrono::minutes(1);
  bool operator==(const StoreSection&) const = default;
};

// Reads the value of the `store` key into `out` (which keeps its defaults for absent keys).
// Accepts `embedded`, `off` (no store) or a mapping of the keys above; `redis: embedded` in the
// mapping means embedded too. Checks every value (the Redis URL is parsed the way the store
// parses it). Throws clupy::ConfigError whose message already names the place:
// "<source>:<line>: key 'store.<key>': <what is wrong>"; `out` is then left unchanged. Keeps no
// state: safe to call from any thread.
void parse_store_section(const YAML::Node& node, const std::string& source, StoreSection& out);

}  // namespace clupy::common
