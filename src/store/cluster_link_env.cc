// The worker's side of the store link: the environment a server gives its workers.
#include <charconv>
#include <cstdlib>

#include "store/cluster_link.hpp"

namespace clupy::detail {

std::optional<StoreOptions> store_options_from(const std::string& redis_url,
                                               const std::string& key_prefix,
                                               std::uint64_t chunk_size) {
  if (redis_url.empty()) return std::nullopt;
  StoreOptions options;
  options.redis_url = redis_url;
  if (!key_prefix.empty()) options.key_prefix = key_prefix;
  if (chunk_size > 0) options.chunk_size = static_cast<std::size_t>(chunk_size);
  return options;
}

std::optional<StoreOptions> store_options_from_env() {
  const char* url = std::getenv(kStoreUrlVariable);
  if (url == nullptr || *url == '\0') return std::nullopt;
  const char* prefix = std::getenv(kStorePrefixVariable);
  std::uint64_t chunk_size = 0;
  if (const char* text = std::getenv(kStoreChunkSizeVariable); text != nullptr && *text != '\0') {
    const std::string_view v(text);
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), chunk_size);
    if (ec != std::errc() || end != v.data() + v.size() || chunk_size == 0)
      throw StoreError(StoreError::Code::kInvalidArgument,
                       std::string(kStoreChunkSizeVariable) +
                           " must be a positive number of bytes, got '" + text + "'");
  }
  return store_options_from(url, prefix != nullptr ? prefix : "", chunk_size);
}

std::vector<std::string> store_environment(const StoreOptions& options) {
  return {std::string(kStoreUrlVariable) + "=" + options.redis_url,
          std::string(kStorePrefixVariable) + "=" + options.key_prefix,
          std::string(kStoreChunkSizeVariable) + "=" + std::to_string(options.chunk_size)};
}

}  // namespace clupy::detail
