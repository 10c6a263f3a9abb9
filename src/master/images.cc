#include "master/images.hpp"

#include <filesystem>

#include "base/hex.hpp"
#include "clupy/errors.hpp"
#include "common/auth.hpp"
#include "common/log.hpp"

namespace clupy::master {

namespace fs = std::filesystem;

std::string hex_of(const std::string& digest) { return base::to_hex(digest); }

ImageStore::ImageStore(std::string directory, std::uint64_t max_bytes)
    : directory_(std::move(directory)), max_bytes_(max_bytes) {
  try {
    fs::create_directories(directory_);
    for (const auto& file : fs::directory_iterator(directory_)) {
      const std::string name = file.path().filename().string();
      if (name.size() != 64 || !file.is_regular_file()) {
        if (name.ends_with(".part")) fs::remove(file.path());  // a previous run's broken upload
        continue;
      }
      Entry& entry = entries_[name];
      entry.size = file.file_size();
      entry.last_used = std::chrono::steady_clock::now();
      total_bytes_ += entry.size;
    }
  } catch (const fs::filesystem_error& e) {
    throw ConfigError("cannot use the image store " + directory_ + ": " + e.code().message());
  }
}

ImageStore::~ImageStore() {
  for (auto& [sha, upload] : uploads_) {
    upload.file.close();
    std::error_code ignored;
    fs::remove(path_of(sha) + ".part", ignored);
  }
}

bool ImageStore::has(const std::string& sha256) const { return entries_.count(hex_of(sha256)) > 0; }

std::string ImageStore::path_of(const std::string& sha256) const {
  return directory_ + "/" + (sha256.size() == 32 ? hex_of(sha256) : sha256);
}

std::optional<std::string> ImageStore::begin_upload(const std::string& sha256,
                                                    std::uint64_t declared_size,
                                                    std::uint64_t uploader) {
  if (sha256.size() != 32) return std::string("bad image digest");
  if (declared_size > max_bytes_)
    return "the program image is " + std::to_string(declared_size) +
           " bytes, more than the master's image_store_size (" + std::to_string(max_bytes_) +
           " bytes)";
  if (has(sha256) || uploading(sha256)) return std::nullopt;
  Upload& upload = uploads_[sha256];
  upload.declared_size = declared_size;
  upload.uploader = uploader;
  upload.file.open(path_of(sha256) + ".part", std::ios::binary | std::ios::trunc);
  if (!upload.file) {
    uploads_.erase(sha256);
    return "cannot create " + path_of(sha256) + ".part";
  }
  return std::nullopt;
}

std::optional<std::string> ImageStore::add_chunk(const std::string& sha256, std::uint64_t uploader,
                                                 std::uint64_t offset, const std::string& data,
                                                 bool last) {
  auto it = uploads_.find(sha256);
  // Not begun, or begun by another client: that one's upload is the one that counts.
  if (it == uploads_.end() || it->second.uploader != uploader) return std::nullopt;
  Upload& upload = it->second;
  auto fail = [&](const std::string& why) -> std::optional<std::string> {
    abort_upload(sha256);
    return why;
  };
  if (offset != upload.written)
    return fail("chunk at offset " + std::to_string(offset) + ", expected " +
                std::to_string(upload.written));
  if (upload.written + data.size() > upload.declared_size)
    return fail("the upload is larger than the " + std::to_string(upload.declared_size) +
                " bytes OpenJob declared");
  upload.file.write(data.data(), static_cast<std::streamsize>(data.size()));
  upload.digest.update(data);
  upload.written += data.size();
  if (!upload.file) return fail("cannot write " + path_of(sha256) + ".part (disk full?)");
  if (!last) return std::nullopt;

  upload.file.close();
  const std::string got = upload.digest.finish();
  if (got != sha256) return fail("the bytes hash to " + hex_of(got) + ", not " + hex_of(sha256));
  const std::uint64_t size = upload.written;
  fs::rename(path_of(sha256) + ".part", path_of(sha256));
  uploads_.erase(it);
  Entry& entry = entries_[hex_of(sha256)];
  entry.size = size;
  entry.last_used = std::chrono::steady_clock::now();
  total_bytes_ += size;
  common::logger("master")->info("stored program image {} ({} bytes)", hex_of(sha256).substr(0, 16),
                                 size);
  // The jobs waiting for it pin it next; until then it is kept by name.
  evict(hex_of(sha256));
  return std::string();
}

std::vector<std::string> ImageStore::abort_uploads_of(std::uint64_t uploader) {
  std::vector<std::string> aborted;
  for (const auto& [sha, upload] : uploads_)
    if (upload.uploader == uploader) aborted.push_back(sha);
  for (const auto& sha : aborted) abort_upload(sha);
  return aborted;
}

void ImageStore::abort_upload(const std::string& sha256) {
  auto it = uploads_.find(sha256);
  if (it == uploads_.end()) return;
  it->second.file.close();
  std::error_code ignored;
  fs::remove(path_of(sha256) + ".part", ignored);
  uploads_.erase(it);
}

std::string ImageStore::add_file(const std::string& sha256, const std::string& source) {
  auto refuse = [&](const std::string& why) {
    std::error_code ignored;
    fs::remove(source, ignored);
    return why;
  };
  if (sha256.size() != 32) return refuse("bad image digest");
  std::ifstream in(source, std::ios::binary);
  if (!in) return refuse("cannot read " + source);
  base::Sha256 digest;
  std::uint64_t size = 0;
  std::string buffer(1 << 16, '\0');
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
    digest.update(std::string_view(buffer.data(), static_cast<std::size_t>(in.gcount())));
    size += static_cast<std::uint64_t>(in.gcount());
  }
  in.close();
  if (digest.finish() != sha256)
    return refuse("its SHA-256 is not " + hex_of(sha256) +
                  " (the copy is damaged or another file)");
  if (has(sha256)) return refuse("");
  std::error_code ec;
  fs::rename(source, path_of(sha256), ec);
  if (ec) return refuse("cannot move it into " + directory_ + ": " + ec.message());
  Entry& entry = entries_[hex_of(sha256)];
  entry.size = size;
  entry.last_used = std::chrono::steady_clock::now();
  total_bytes_ += size;
  evict(hex_of(sha256));
  return "";
}

void ImageStore::pin(const std::string& sha256) {
  auto it = entries_.find(hex_of(sha256));
  if (it == entries_.end()) return;
  ++it->second.pins;
  it->second.last_used = std::chrono::steady_clock::now();
}

void ImageStore::unpin(const std::string& sha256) {
  auto it = entries_.find(hex_of(sha256));
  if (it != entries_.end() && it->second.pins > 0) --it->second.pins;
}

void ImageStore::evict(const std::string& keep) {
  while (total_bytes_ > max_bytes_) {
    auto victim = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->second.pins == 0 && it->first != keep &&
          (victim == entries_.end() || it->second.last_used < victim->second.last_used))
        victim = it;
    if (victim == entries_.end()) return;  // everything is in use: over budget until jobs end
    std::error_code ignored;
    fs::remove(directory_ + "/" + victim->first, ignored);
    total_bytes_ -= victim->second.size;
    common::logger("master")->info("evicted program image {} ({} bytes)",
                                   victim->first.substr(0, 16), victim->second.size);
    entries_.erase(victim);
  }
}

}  // namespace clupy::master
