// SHA-256 (OpenSSL EVP) for everything content-addressed: program images, code segments, store
// files. The one implementation every folder uses.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

struct evp_md_ctx_st;

namespace clupy::base {

// Incremental SHA-256. Not thread-safe; movable. Throws std::runtime_error when OpenSSL cannot
// set up a digest context (out of memory).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void update(std::string_view bytes);
  // The 32-byte digest. The object must not be updated afterwards.
  std::string finish();

 private:
  std::unique_ptr<evp_md_ctx_st, void (*)(evp_md_ctx_st*)> context_;
};

// The 32-byte digest of `bytes`.
std::string sha256(std::string_view bytes);
// The 32-byte digest of a file's contents, or nullopt when it cannot be read.
std::optional<std::string> sha256_file(const std::string& path);

}  // namespace clupy::base
