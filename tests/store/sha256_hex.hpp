// The SHA-256 of bytes as lowercase hex, computed independently of the store (OpenSSL), so store
// tests can check what stat() reports.
#pragma once

#include <openssl/evp.h>

#include <string>

namespace clupy::test {

inline std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

}  // namespace clupy::test
