// SHA-256, for program images (their names) and anything else content-addressed.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

struct evp_md_ctx_st;

namespace clupy::common {

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

std::string sha256(std::string_view bytes);
// The digest of a file's contents, or nullopt when it cannot be read.
std::optional<std::string> sha256_file(const std::string& path);

}  // namespace clupy::common
