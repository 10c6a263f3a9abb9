// The master's content-addressed store of program images (the clients' executables), on disk
// under data_dir/images/<sha256>, bounded in size: least recently used images that no open job
// needs are evicted. Uploads arrive in chunks and are verified against their SHA-256 before
// they become visible. Not thread-safe: owned by the master's io_context thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/sha256.hpp"

namespace clupy::master {

class ImageStore {
 public:
  // Creates the directory if needed and indexes the images already there. Throws
  // clupy::ConfigError when the directory cannot be created or read.
  ImageStore(std::string directory, std::uint64_t max_bytes);
  ~ImageStore();

  bool has(const std::string& sha256) const;
  bool uploading(const std::string& sha256) const { return uploads_.count(sha256) > 0; }
  std::string path_of(const std::string& sha256) const;
  std::uint64_t max_bytes() const { return max_bytes_; }

  // One upload per image, by one uploader (a session id): others that need the image wait for
  // it. Returns an error message when an image of `declared_size` bytes cannot be stored.
  std::optional<std::string> begin_upload(const std::string& sha256, std::uint64_t declared_size,
                                          std::uint64_t uploader);
  // Appends a chunk of the upload `uploader` began. Returns nullopt while more is expected (and
  // for chunks of anyone but the uploader, which are ignored), "" once the image is stored and
  // verified, or an error message (the upload is then discarded). A stored image is kept by the
  // eviction that makes room for it.
  std::optional<std::string> add_chunk(const std::string& sha256, std::uint64_t uploader,
                                       std::uint64_t offset, const std::string& data, bool last);
  void abort_upload(const std::string& sha256);
  // Discards the uploads `uploader` began and did not finish; returns their digests.
  std::vector<std::string> abort_uploads_of(std::uint64_t uploader);

  // Moves the file at `source` (on the same file system) into the store as the image `sha256`
  // after checking its digest. Returns "" or why it was refused (the file is then removed).
  std::string add_file(const std::string& sha256, const std::string& source);

  // Open jobs pin their image so eviction leaves it alone.
  void pin(const std::string& sha256);
  void unpin(const std::string& sha256);

  std::uint64_t total_bytes() const { return total_bytes_; }

 private:
  struct Entry {
    std::uint64_t size = 0;
    std::chrono::steady_clock::time_point last_used;
    int pins = 0;
  };
  struct Upload {
    std::ofstream file;
    std::uint64_t written = 0;
    std::uint64_t declared_size = 0;
    std::uint64_t uploader = 0;
    base::Sha256 digest;
  };
  // Evicts least recently used unpinned images (never `keep`, a hex digest) until the store
  // fits its budget.
  void evict(const std::string& keep);

  std::string directory_;
  std::uint64_t max_bytes_;
  std::uint64_t total_bytes_ = 0;
  std::map<std::string, Entry> entries_;
  std::map<std::string, Upload> uploads_;
};

// Lowercase hex of SHA-256 digests, as used for file names.
std::string hex_of(const std::string& digest);

}  // namespace clupy::master
