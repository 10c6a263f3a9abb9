// The cluster token and the HMAC challenge/response built on it. The token itself never
// travels: each side proves it knows the token by MACing the other side's fresh nonce.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace clupy::common {

inline constexpr std::size_t kNonceSize = 32;
inline constexpr std::size_t kTokenBytes = 32;  // 64 hex characters on disk

std::string random_bytes(std::size_t count);
std::string hmac_sha256(std::string_view key, std::string_view message);
bool constant_time_equal(std::string_view a, std::string_view b);

// What the connector proves: HMAC(token, "clupy-v1 client" | server_nonce | client_nonce).
std::string client_proof(std::string_view token, std::string_view server_nonce,
                         std::string_view client_nonce);
// What the acceptor proves back: HMAC(token, "clupy-v1 server" | client_nonce | server_nonce).
std::string server_proof(std::string_view token, std::string_view client_nonce,
                         std::string_view server_nonce);

// The default token file: $HOME/.clupy/cluster.token (./.clupy/cluster.token without HOME).
std::string default_token_path();

// Reads a token file (trailing whitespace ignored). Throws clupy::ConfigError when the file
// cannot be read, is empty, or is readable by group or others.
std::string read_token_file(const std::string& path);

// The master's first start: reads the token file, creating it with a random token and mode 0600
// (and its directory with 0700) when it does not exist. Returns the token. Throws
// clupy::ConfigError when the file cannot be read or created.
std::string load_or_create_token(const std::string& path);

// The one rule for the token, for every process: the first of CLUPY_TOKEN (the token itself),
// CLUPY_TOKEN_FILE, the configured file (YAML `token_file` or --token-file), the default file.

// Where a server or client gets its token. nullopt when none of them exists. Throws
// clupy::ConfigError as read_token_file does.
std::optional<std::string> resolve_token(const std::string& configured_file);

// The master's token, by the same rule, except that the chosen file (CLUPY_TOKEN_FILE, else the
// configured file, else the default file) is created by load_or_create_token when missing.
// `source` says where the token came from, for the log: "CLUPY_TOKEN" or the file's path.
struct MasterToken {
  std::string token;
  std::string source;
};
MasterToken resolve_master_token(const std::string& configured_file);

}  // namespace clupy::common
