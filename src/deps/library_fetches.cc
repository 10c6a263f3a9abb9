#include "deps/library_fetches.hpp"

#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "common/auth.hpp"

namespace clupy::deps {
namespace fs = std::filesystem;

bool file_has_digest(const std::string& path, const std::string& sha256) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  auto digest = base::sha256_file(path);
  return digest && *digest == sha256;
}

LibraryFetches::LibraryFetches(std::string directory, Finished finished)
    : directory_(std::move(directory)), finished_(std::move(finished)) {}

LibraryFetches::~LibraryFetches() {
  for (const auto& [sha, fetch] : fetches_) {
    std::error_code ignored;
    fs::remove(fetch.partial, ignored);
  }
}

std::string LibraryFetches::path(const std::string& sha256) const {
  return directory_ + "/" + base::to_hex(sha256);
}

bool LibraryFetches::present(const std::string& sha256) const {
  return file_has_digest(path(sha256), sha256);
}

bool LibraryFetches::start(const std::string& sha256) {
  if (fetches_.contains(sha256)) return false;
  Fetch& fetch = fetches_[sha256];
  fetch.partial = path(sha256) + ".part-" + base::to_hex(common::random_bytes(6));
  std::ofstream(fetch.partial, std::ios::binary | std::ios::trunc);
  return true;
}

bool LibraryFetches::chunk(const wire::ImageChunk& chunk) {
  auto it = fetches_.find(chunk.image_sha256());
  if (it == fetches_.end()) return false;
  Fetch& fetch = it->second;
  if (chunk.offset() != fetch.received) {
    finish(chunk.image_sha256(), false, "the master sent the library out of order");
    return true;
  }
  {
    std::ofstream out(fetch.partial, std::ios::binary | std::ios::app);
    out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    if (!out) {
      finish(chunk.image_sha256(), false, "cannot write " + fetch.partial);
      return true;
    }
  }
  fetch.received += chunk.data().size();
  if (!chunk.last()) return true;
  if (!file_has_digest(fetch.partial, chunk.image_sha256())) {
    finish(chunk.image_sha256(), false, "the fetched bytes do not match the library's SHA-256");
    return true;
  }
  std::error_code ec;
  fs::permissions(fetch.partial,
                  fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read |
                      fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                  ec);
  fs::rename(fetch.partial, path(chunk.image_sha256()), ec);
  finish(chunk.image_sha256(), !ec, ec ? "cannot store it: " + ec.message() : "");
  return true;
}

bool LibraryFetches::failed(const std::string& sha256, const std::string& reason) {
  if (!fetches_.contains(sha256)) return false;
  finish(sha256, false, "the master cannot send it: " + reason);
  return true;
}

void LibraryFetches::connection_lost() {
  std::vector<std::string> running;
  for (const auto& [sha, fetch] : fetches_) running.push_back(sha);
  for (const auto& sha : running)
    finish(sha, false, "the connection to the master was lost while fetching it");
}

void LibraryFetches::finish(const std::string& sha256, bool ok, const std::string& detail) {
  auto it = fetches_.find(sha256);
  if (it == fetches_.end()) return;
  const Fetch fetch = std::move(it->second);
  fetches_.erase(it);
  if (!ok) {
    std::error_code ignored;  // the partial file is garbage either way
    fs::remove(fetch.partial, ignored);
  }
  if (finished_) finished_(sha256, ok, detail, fetch.received);
}

}  // namespace clupy::deps
