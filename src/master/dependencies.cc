#include "master/dependencies.hpp"

#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "clupy/errors.hpp"
#include "common/log.hpp"

namespace clupy::master {

namespace {
namespace fs = std::filesystem;
auto log() { return common::logger("master"); }
constexpr const char* kDefaultManifest = "clupy.master.dependency.yaml";
}  // namespace

ManifestKeeper::ManifestKeeper(std::string path, std::string data_dir)
    : path_(path.empty() ? kDefaultManifest : std::move(path)),
      explicit_path_(path_ != kDefaultManifest),
      library_dir_(data_dir + "/libraries") {
  if (path_ == "none") return;  // no manifest, whatever files exist
  if (!explicit_path_ && !fs::exists(path_)) {
    stamps_ = stamps();
    return;  // no manifest: nothing is required
  }
  install(deps::load_manifest(path_));
  log()->info("dependency manifest {} version {}: {} package(s), {} librar(y/ies)", path_,
              manifest_.version.substr(0, 12), manifest_.packages.size(),
              manifest_.libraries.size());
}

ManifestKeeper::Stamp ManifestKeeper::stamp_of(const std::string& path) {
  Stamp stamp;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) return stamp;
  stamp.exists = true;
  stamp.size = fs::file_size(path, ec);
  stamp.time = fs::last_write_time(path, ec);
  return stamp;
}

std::vector<ManifestKeeper::Stamp> ManifestKeeper::stamps() const {
  std::vector<Stamp> out{stamp_of(path_)};
  for (const auto& library : manifest_.libraries) out.push_back(stamp_of(library.path));
  return out;
}

void ManifestKeeper::install(deps::Manifest manifest) {
  // Store the libraries' bytes first: a manifest is announced only once servers can fetch it.
  for (const auto& library : manifest.libraries) {
    const std::string stored = library_dir_ + "/" + base::to_hex(library.sha256);
    if (fs::exists(stored)) continue;
    fs::create_directories(library_dir_);
    const std::string staging = stored + ".tmp";
    fs::copy_file(library.path, staging, fs::copy_options::overwrite_existing);
    if (base::sha256_file(staging) != library.sha256)
      throw ConfigError("library " + library.path + " changed while it was being read; " +
                        "the manifest is read again when it settles");
    fs::rename(staging, stored);
  }
  manifest_ = std::move(manifest);
  deps::to_wire(manifest_, announcement_);
  last_error_.clear();
  stamps_ = stamps();
}

bool ManifestKeeper::reload(const std::string& why) {
  if (path_ == "none") return false;
  const std::string before = manifest_.version;
  // The file's stamp as it was before it was read: a file still being written when it was read
  // (a truncated YAML, or an empty one) differs from it once the writer is done, and is read
  // again at the next poll; a stamp taken after the read would match the finished file.
  const Stamp file_stamp = stamp_of(path_);
  try {
    if (!explicit_path_ && !fs::exists(path_)) {
      install(deps::Manifest{});
    } else {
      install(deps::load_manifest(path_));
    }
    stamps_.front() = file_stamp;
  } catch (const std::exception& e) {
    // Retried at the next change of the files, not at every poll.
    stamps_ = stamps();
    stamps_.front() = file_stamp;
    if (last_error_ != e.what())
      log()->error("dependency manifest {} not reloaded ({}): {}; keeping version {}", path_, why,
                   e.what(), before.empty() ? "(none)" : before.substr(0, 12));
    last_error_ = e.what();
    return false;
  }
  if (manifest_.version == before) {
    log()->info("dependency manifest {} reloaded ({}): unchanged", path_, why);
    return false;
  }
  log()->info("dependency manifest {} reloaded ({}): version {}: {} package(s), {} librar(y/ies)",
              path_, why, manifest_.version.empty() ? "(none)" : manifest_.version.substr(0, 12),
              manifest_.packages.size(), manifest_.libraries.size());
  return true;
}

bool ManifestKeeper::reload_if_changed() {
  if (path_ == "none" || stamps() == stamps_) return false;
  return reload("the file changed");
}

std::optional<std::string> ManifestKeeper::library_file(const std::string& sha256) const {
  if (sha256.size() != 32) return std::nullopt;
  const std::string stored = library_dir_ + "/" + base::to_hex(sha256);
  if (!fs::exists(stored)) return std::nullopt;
  return stored;
}

bool ManifestKeeper::satisfied_by(const wire::DependencyReport& report) const {
  if (manifest_.version.empty()) return true;
  return report.manifest_version() == manifest_.version && report.satisfied() &&
         !report.in_progress();
}

}  // namespace clupy::master
