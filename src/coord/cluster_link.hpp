// Coordination's link to the cluster: how a program or a task finds the cluster's ZooKeeper.
//
// The master announces its `coordination:` section (connect string with chroot, session timeout,
// digest) at every handshake; a server hands it to its worker processes in the environment
// (CLUPY_COORD_CONNECT, CLUPY_COORD_SESSION_TIMEOUT_MS, CLUPY_COORD_DIGEST_AUTH), so a task and
// the program that submitted it reach the same nodes. clupy::coord::cluster_session_options()
// sits on top.
#pragma once

#include <clupy/coord.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace clupy::detail {

// ---- implemented by the client runtime (src/client/cluster_link.cc) ----

// In a worker process, coordination_options_from_env(); in a program after clupy::init(), what
// the master announced. nullopt when the cluster has no coordination service or this process is
// not connected to a cluster. Thread-safe; never blocks.
std::optional<coord::SessionOptions> cluster_coordination_options();

// ---- implemented here (src/coord/cluster_link_env.cc) ----

inline constexpr const char* kCoordConnectVariable = "CLUPY_COORD_CONNECT";
inline constexpr const char* kCoordSessionTimeoutVariable = "CLUPY_COORD_SESSION_TIMEOUT_MS";
inline constexpr const char* kCoordDigestVariable = "CLUPY_COORD_DIGEST_AUTH";

// Options from what the master announces: nullopt when `connect` is empty (no coordination). A
// session timeout of 0 keeps the SessionOptions default.
std::optional<coord::SessionOptions> coordination_options_from(const std::string& connect,
                                                               std::uint32_t session_timeout_ms,
                                                               const std::string& digest_auth);

// The options a server gave this worker process in its environment; nullopt when
// CLUPY_COORD_CONNECT is unset or empty. Throws CoordError kBadArgument naming the variable when
// CLUPY_COORD_SESSION_TIMEOUT_MS is not a positive integer. Reads the environment (getenv).
std::optional<coord::SessionOptions> coordination_options_from_env();

// "NAME=value" entries that make coordination_options_from_env() give back `options`: what a
// server adds to the environment of the workers it starts.
std::vector<std::string> coordination_environment(const coord::SessionOptions& options);

}  // namespace clupy::detail
