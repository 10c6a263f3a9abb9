#include "common/auth.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "base/hex.hpp"
#include "clupy/errors.hpp"

namespace clupy::common {

std::string random_bytes(std::size_t count) {
  std::string out(count, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(count)) != 1)
    throw std::runtime_error("RAND_bytes failed: no entropy available");
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac,
           &mac_len) == nullptr)
    throw std::runtime_error("HMAC-SHA256 failed");
  return std::string(reinterpret_cast<const char*>(mac), mac_len);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

namespace {
std::string concat(std::string_view label, std::string_view a, std::string_view b) {
  std::string message;
  message.reserve(label.size() + a.size() + b.size());
  message.append(label).append(a).append(b);
  return message;
}
}  // namespace

std::string client_proof(std::string_view token, std::string_view server_nonce,
                         std::string_view client_nonce) {
  return hmac_sha256(token, concat("clupy-v1 client", server_nonce, client_nonce));
}

std::string server_proof(std::string_view token, std::string_view client_nonce,
                         std::string_view server_nonce) {
  return hmac_sha256(token, concat("clupy-v1 server", client_nonce, server_nonce));
}

std::string default_token_path() {
  const char* home = std::getenv("HOME");
  std::string base = (home && *home) ? home : ".";
  return base + "/.clupy/cluster.token";
}

std::string read_token_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw ConfigError("cannot read token file " + path + ": it does not exist");
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
    throw ConfigError("token file " + path + " is readable by others; run `chmod 600 " + path +
                      "`");
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read token file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token = ss.str();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) throw ConfigError("token file " + path + " is empty");
  return token;
}

std::string load_or_create_token(const std::string& path) {
  namespace fs = std::filesystem;
  try {
    if (fs::exists(path)) return read_token_file(path);
    fs::path dir = fs::path(path).parent_path();
    if (!dir.empty() && !fs::exists(dir)) {
      fs::create_directories(dir);
      fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
    }
  } catch (const fs::filesystem_error& e) {
    throw ConfigError("cannot create token file " + path + ": " + e.code().message());
  }
  const std::string token = base::to_hex(random_bytes(kTokenBytes));
  // Created with 0600 from the start (umask can only remove bits), never chmod'ed afterwards,
  // so the token is not readable by others even for an instant.
  const std::string tmp = path + ".tmp";
  {
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw ConfigError("cannot create token file " + tmp + ": " + std::strerror(errno));
    const std::string line = token + "\n";
    const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    ::close(fd);
    if (!written) throw ConfigError("cannot write token file " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw ConfigError("cannot create token file " + path + ": " + std::strerror(errno));
  return token;
}

MasterToken resolve_master_token(const std::string& configured_file) {
  if (const char* t = std::getenv("CLUPY_TOKEN"); t && *t) return {t, "CLUPY_TOKEN"};
  std::string path = default_token_path();
  if (const char* f = std::getenv("CLUPY_TOKEN_FILE"); f && *f) {
    path = f;
  } else if (!configured_file.empty()) {
    path = configured_file;
  }
  return {load_or_create_token(path), path};
}

std::optional<std::string> resolve_token(const std::string& configured_file) {
  if (const char* t = std::getenv("CLUPY_TOKEN"); t && *t) return std::string(t);
  if (const char* f = std::getenv("CLUPY_TOKEN_FILE"); f && *f) return read_token_file(f);
  if (!configured_file.empty()) return read_token_file(configured_file);
  if (std::filesystem::exists(default_token_path())) return read_token_file(default_token_path());
  return std::nullopt;
}

}  // namespace clupy::common
