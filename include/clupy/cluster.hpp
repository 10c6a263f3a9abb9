// Looking at a running cluster: the master's server registry, as `clupy info` prints it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace clupy {

// How to reach the master. Empty fields fall back to ./clupy.client.yaml, then to defaults
// (clupy://localhost:7878; the token from CLUPY_TOKEN, CLUPY_TOKEN_FILE or ~/.clupy/cluster.token).
struct ConnectOptions {
  std::string master_url;
  std::string token_file;
  std::string config_file;  // a clupy.client.yaml other than the one in the working directory
  std::chrono::milliseconds timeout{0};  // 0: connect_timeout from the client config (5 s)
};

// One package or library of the dependency manifest on one server (docs/dependencies.md).
struct DependencyStatus {
  std::string kind;  // "package" or "library"
  std::string name;
  std::string required;  // ">= 0.3", or the library's SHA-256 prefix
  std::string state;     // checking, present, installing, installed, failed
  std::string version;   // what the server has (packages)
  std::string detail;    // installing: the installer's last line; failed: why, its output tail
  int exit_code = 0;
};

struct ServerStatus {
  std::string server_id;
  std::string hostname;
  std::string address;
  std::uint32_t pid = 0;
  std::uint32_t capacity = 0;  // worker slots
  std::uint32_t busy_slots = 0;
  std::map<std::string, std::string> labels;
  std::string version;  // libclupy version and protocol of the server
  std::string abi_tag;
  std::chrono::system_clock::time_point registered_at;
  std::chrono::system_clock::time_point last_heartbeat;
  std::string reserved_by;  // empty when no client holds it
  std::chrono::system_clock::time_point reserved_since;
  bool connected = true;  // false: its connection is gone; it is dropped after the TTL
  // Its dependencies against the master's manifest: "" (no manifest, or no report yet),
  // "satisfied", "syncing" or "not satisfied" (it takes no tasks; the summary says why).
  std::string dependency_state;
  std::string dependency_manifest;  // the manifest version it reported on
  std::string dependency_summary;
  std::vector<DependencyStatus> dependencies;
};

struct ClusterStatus {
  std::string master_url;
  std::string master_version;
  std::chrono::system_clock::time_point master_time;
  std::chrono::system_clock::time_point master_started;
  std::uint64_t queued_tasks = 0;         // submitted and waiting for a worker slot
  std::uint64_t running_tasks = 0;        // assigned to servers
  std::uint32_t clients = 0;              // programs with an open job
  std::string dependency_manifest;        // the master's manifest version; empty: none
  std::string dependency_manifest_error;  // why its last reload was refused, if it was
  std::vector<ServerStatus> servers;
};

// Asks the master for its registry. Blocks up to the timeout. Throws clupy::ConnectionError
// (unreachable, timed out), clupy::HandshakeError (version mismatch, wrong token) or
// clupy::ConfigError. Thread-safe: each call uses its own connection.
ClusterStatus cluster_status(const ConnectOptions& options = {});

}  // namespace clupy
