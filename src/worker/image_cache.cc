#include "worker/image_cache.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "common/log.hpp"

namespace clupy::worker {

namespace fs = std::filesystem;

namespace {
auto log() { return common::logger("server"); }
}  // namespace

ImageCache::ImageCache(std::string directory) : directory_(std::move(directory)) {
  fs::create_directories(directory_ + "/images");
}

ImageCache::Need ImageCache::need(const std::string& sha256) {
  Image& image = images_[sha256];
  if (image.path.empty()) {
    image.path = directory_ + "/images/" + base::to_hex(sha256);
    // Servers on one machine may share a cache: each downloads into a file of its own and
    // renames it into place, which is atomic.
    image.partial = image.path + ".part-" + std::to_string(::getpid());
  }
  if (image.ready) return Need::kReady;
  if (image.fetching) return Need::kFetching;
  if (verify_cached(image, sha256)) {
    ++counters_.hits;
    return Need::kReady;
  }
  ++counters_.misses;
  image.fetching = true;
  image.received = 0;
  std::error_code ignored;
  fs::remove(image.partial, ignored);
  log()->info("fetching program image {} from the master", base::to_hex(sha256).substr(0, 16));
  return Need::kFetch;
}

bool ImageCache::verify_cached(Image& image, const std::string& sha256) {
  if (!fs::exists(image.path)) return false;
  // A cached file is trusted only after its bytes are checked once by this process.
  auto digest = base::sha256_file(image.path);
  if (!digest || *digest != sha256) {
    log()->warn("cached image {} is corrupt; fetching it again", image.path);
    std::error_code ignored;
    fs::remove(image.path, ignored);
    return false;
  }
  image.ready = true;
  return true;
}

ImageCache::ChunkResult ImageCache::add_chunk(const std::string& sha256, std::uint64_t offset,
                                              const std::string& data, bool last,
                                              std::string& error) {
  auto it = images_.find(sha256);
  if (it == images_.end() || !it->second.fetching) return ChunkResult::kIgnored;
  Image& image = it->second;
  auto fail = [&](std::string why) {
    error = std::move(why);
    fetch_failed(sha256);
    return ChunkResult::kFailed;
  };
  if (offset != image.received) return fail("image chunks arrived out of order");
  {
    std::ofstream part(image.partial, std::ios::binary | std::ios::app);
    part.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!part) return fail("cannot write " + image.path + ".part (disk full?)");
  }
  image.received += data.size();
  counters_.bytes_fetched += data.size();
  if (!last) return ChunkResult::kMore;
  auto digest = base::sha256_file(image.partial);
  if (!digest || *digest != sha256) return fail("the fetched image does not match its SHA-256");
  ::chmod(image.partial.c_str(), 0755);
  fs::rename(image.partial, image.path);
  image.fetching = false;
  image.ready = true;
  log()->info("program image {} cached ({} bytes)", base::to_hex(sha256).substr(0, 16),
              image.received);
  return ChunkResult::kReady;
}

void ImageCache::fetch_failed(const std::string& sha256) {
  auto it = images_.find(sha256);
  if (it == images_.end()) return;
  it->second.fetching = false;
  std::error_code ignored;
  fs::remove(it->second.partial, ignored);
}

void ImageCache::forget_fetches() {
  for (auto& [sha, image] : images_) image.fetching = false;
}

bool ImageCache::ready(const std::string& sha256) const {
  auto it = images_.find(sha256);
  return it != images_.end() && it->second.ready;
}

const std::string& ImageCache::path(const std::string& sha256) const {
  static const std::string kNone;
  auto it = images_.find(sha256);
  return it == images_.end() ? kNone : it->second.path;
}

}  // namespace clupy::worker
