// A server's cache of program images: content-addressed files under <directory>/images/<hex
// SHA-256>, fetched from the master in chunks and verified by their digest before a worker is
// started from them. Several servers on one machine may share the directory: each writes its
// download to a file of its own and renames it into place (atomic), and a file found there is
// trusted only after this process has checked its digest once. Images are never evicted here
// (the master's ImageStore bounds its own copies). Not thread-safe: owned by the server's
// io_context thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace clupy::worker {

class ImageCache {
 public:
  // Creates <directory>/images if needed; throws std::filesystem::filesystem_error when it
  // cannot.
  explicit ImageCache(std::string directory);

  enum class Need {
    kReady,     // verified, workers may start from path()
    kFetching,  // its chunks are on their way
    kFetch,     // not here: the caller asks the master for it now (it counts as fetching)
  };
  // A task needs the image `sha256` (32 bytes). The first time this process sees it, a file
  // already in the directory is verified (a hit), else a fetch begins (a miss).
  Need need(const std::string& sha256);

  enum class ChunkResult {
    kIgnored,  // not being fetched (a late chunk of an abandoned fetch)
    kMore,     // stored; more expected
    kReady,    // the last one: the image is verified and in place
    kFailed,   // the fetch failed: `error` says why; the partial file is gone
  };
  ChunkResult add_chunk(const std::string& sha256, std::uint64_t offset, const std::string& data,
                        bool last, std::string& error);
  // The fetch of `sha256` ended without the image (the master could not send it): the partial
  // file is removed; the next need() fetches again.
  void fetch_failed(const std::string& sha256);
  // Fetches under way are forgotten (the master they came from is gone).
  void forget_fetches();

  bool ready(const std::string& sha256) const;
  // Where the image is (or will be) kept; "" for an image never needed.
  const std::string& path(const std::string& sha256) const;

  struct Counters {
    std::uint64_t hits = 0;    // first needs found verified in the directory
    std::uint64_t misses = 0;  // fetches begun
    std::uint64_t bytes_fetched = 0;
  };
  const Counters& counters() const { return counters_; }

 private:
  struct Image {
    bool ready = false;
    bool fetching = false;
    std::string path;
    std::string partial;  // where the bytes received so far are
    std::uint64_t received = 0;
  };
  bool verify_cached(Image& image, const std::string& sha256);

  std::string directory_;
  std::map<std::string, Image> images_;
  Counters counters_;
};

}  // namespace clupy::worker
