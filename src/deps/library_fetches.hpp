// Library files fetched from the master into one content-addressed folder (a server's
// cache_dir/libraries: one file per SHA-256, named by its hex). Each fetch writes the pieces
// (ImageChunk, in order) to a partial file of its own and renames it into place only after the
// whole file's SHA-256 matched, so a file under a digest's name always has that digest; a fetch
// that fails leaves nothing. Used by the manifest's sync (ServerSync) and by jobs' own libraries
// (JobDependencies). Owned by one thread; not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "clupy.pb.h"

namespace clupy::deps {

// The file at `path` exists and its SHA-256 is `sha256` (32 bytes). Safe on any thread.
bool file_has_digest(const std::string& path, const std::string& sha256);

class LibraryFetches {
 public:
  // Called once for each fetch that ends, on the thread that passed the piece or the failure:
  // ok, or why not (a sentence), and the bytes received.
  using Finished = std::function<void(const std::string& sha256, bool ok, const std::string& detail,
                                      std::uint64_t received)>;
  LibraryFetches(std::string directory, Finished finished);
  ~LibraryFetches();  // removes the partial files: a partial download is worthless
  LibraryFetches(const LibraryFetches&) = delete;
  LibraryFetches& operator=(const LibraryFetches&) = delete;

  const std::string& directory() const { return directory_; }
  std::string path(const std::string& sha256) const;
  // A file with this digest is in the folder (hashes it).
  bool present(const std::string& sha256) const;
  // Begins a fetch: true when the caller is to ask the master for the bytes, false when a fetch
  // of this digest is already running (its bytes are on their way).
  bool start(const std::string& sha256);
  // A piece of a running fetch; false when no fetch of its digest runs (not ours).
  bool chunk(const wire::ImageChunk& chunk);
  // The master cannot send it; false when no fetch of that digest runs.
  bool failed(const std::string& sha256, const std::string& reason);
  // The master is gone: every running fetch ends, failed.
  void connection_lost();

 private:
  struct Fetch {
    std::string partial;  // the file the bytes go to
    std::uint64_t received = 0;
  };
  void finish(const std::string& sha256, bool ok, const std::string& detail);

  std::string directory_;
  Finished finished_;
  std::map<std::string, Fetch> fetches_;  // by SHA-256
};

}  // namespace clupy::deps
