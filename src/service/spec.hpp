// The service file (docs/services.md lists every key): what `clupy --publish` reads.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace clupy::services {

enum class AuthMode { kToken, kKey, kPublic };

struct ServiceSpec {
  std::string name;                       // [a-z0-9_-], 1 to 63 characters
  std::string binary;                     // absolute, resolved against the file's folder
  std::vector<std::string> entry_points;  // exported names, at least one
  int port = 0;                           // 0: any free port (the URL printed says which)
  std::string bind;                       // "": the master's bind address
  int replicas = 1;
  std::vector<std::string> packages;  // enforced through the dependency manifest
  std::size_t max_body = 1 << 20;
  std::chrono::milliseconds timeout{5000};
  AuthMode auth = AuthMode::kToken;
  std::string key_file;  // kKey: the file holding the service key (its first line)
};

// Parses a service file's text. `source` names it in messages; relative paths are resolved
// against `base_dir`. Throws clupy::ConfigError "<source>:<line>: key '<key>': <what>".
ServiceSpec parse_service_spec(const std::string& yaml, const std::string& source,
                               const std::string& base_dir);
// Reads and parses the file at `path`.
ServiceSpec load_service_spec(const std::string& path);

const char* auth_mode_name(AuthMode mode);

}  // namespace clupy::services
