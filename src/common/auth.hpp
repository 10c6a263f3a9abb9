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
std::string to_hex(std::string_view bytes);

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
// (and its directory with 0700) when it does not exist. Returns the token.
std::string load_or_create_token(const std::string& path);

// Where a server or client gets its token, first match wins: CLUPY_TOKEN (the token itself),
// CLUPY_TOKEN_FILE, the configured file, the default file. nullopt when none exists.
std::optional<std::string> resolve_token(const std::string& configured_file);

}  // namespace clupy::common
