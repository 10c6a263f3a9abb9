// The file store's link to the cluster: how a process learns where its cluster's store is.
//
// The master announces its store (Redis URL, key prefix, chunk size) to clients when it opens
// their job and to servers when they register; a server hands it to its worker processes in
// the environment (CLUPY_STORE_URL, CLUPY_STORE_PREFIX, CLUPY_STORE_CHUNK_SIZE), and the CLI
// asks the master for it. clupy::cluster_store() and `clupy store --master-url` sit on top.
#pragma once

#include <clupy/cluster.hpp>
#include <clupy/store.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace clupy::detail {

// ---- implemented by the client runtime (src/client) ----

// The store of the cluster this process belongs to: in a worker process, store_options_from_env();
// in a program after clupy::init(), what the master said when it opened the job. nullopt when
// the cluster has no store or this process is not connected to one. Thread-safe; never blocks.
std::optional<StoreOptions> cluster_store_options();

// Asks the master at `options` (as an admin connection) where its store is; nullopt when it has
// none. Blocks up to the connection timeout. Throws clupy::ConnectionError, HandshakeError or
// ConfigError like clupy::cluster_status(). Thread-safe.
std::optional<StoreOptions> fetch_store_options(const ConnectOptions& options);

// ---- implemented here (src/store/cluster_link_env.cc) ----

inline constexpr const char* kStoreUrlVariable = "CLUPY_STORE_URL";
inline constexpr const char* kStorePrefixVariable = "CLUPY_STORE_PREFIX";
inline constexpr const char* kStoreChunkSizeVariable = "CLUPY_STORE_CHUNK_SIZE";

// Options from what the master announces: nullopt when `redis_url` is empty (no store). An
// empty prefix or a chunk size of 0 keeps the StoreOptions default. Does not validate (Store's
// constructor does).
std::optional<StoreOptions> store_options_from(const std::string& redis_url,
                                               const std::string& key_prefix,
                                               std::uint64_t chunk_size);

// The options a server gave this worker process in its environment; nullopt when
// CLUPY_STORE_URL is unset or empty. Throws StoreError kInvalidArgument naming the variable
// when CLUPY_STORE_CHUNK_SIZE is not a positive integer. Reads the environment (getenv): do not
// call it while another thread changes the environment.
std::optional<StoreOptions> store_options_from_env();

// "NAME=value" entries that make store_options_from_env() give back `options`' URL, prefix and
// chunk size: what a server adds to the environment of the workers it starts.
std::vector<std::string> store_environment(const StoreOptions& options);

}  // namespace clupy::detail
