// The master's dependency manifest (docs/dependencies.md): loaded at start, reloaded on SIGHUP
// or when the file (or one of its libraries) changes; a bad file keeps the previous manifest and
// says why. Library files are copied into a content-addressed folder under data_dir, so what
// servers fetch is exactly what was hashed even if the source file is rebuilt meanwhile.
// Owned by the master's io_context thread; not thread-safe.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "clupy.pb.h"
#include "deps/manifest.hpp"

namespace clupy::master {

class ManifestKeeper {
 public:
  // `path` empty: clupy.master.dependency.yaml in the working directory when it exists, else no
  // manifest (nothing is required); "none": no manifest at all (the embedded cluster). Loads it
  // now: throws ConfigError when it is given and bad.
  ManifestKeeper(std::string path, std::string data_dir);

  // Reads the file again. Returns true when the version changed. A bad file keeps the current
  // manifest; last_error() says why (file:line: key '...': what).
  bool reload(const std::string& why);
  // Reloads when the file or a library it names changed since the last load (size, time or
  // presence). Returns true when the version changed.
  bool reload_if_changed();

  const deps::Manifest& manifest() const { return manifest_; }
  const wire::DependencyManifest& announcement() const { return announcement_; }
  const std::string& version() const { return manifest_.version; }
  const std::string& last_error() const { return last_error_; }
  const std::string& path() const { return path_; }
  // The stored copy of a library of the current (or an earlier) manifest, by SHA-256.
  std::optional<std::string> library_file(const std::string& sha256) const;
  // Whether this server report says the server meets the current manifest.
  bool satisfied_by(const wire::DependencyReport& report) const;

 private:
  struct Stamp {
    bool exists = false;
    std::uintmax_t size = 0;
    std::filesystem::file_time_type time{};
    bool operator==(const Stamp&) const = default;
  };
  static Stamp stamp_of(const std::string& path);
  std::vector<Stamp> stamps() const;
  void install(deps::Manifest manifest);

  std::string path_;
  bool explicit_path_;
  std::string library_dir_;
  deps::Manifest manifest_;
  wire::DependencyManifest announcement_;
  std::string last_error_;
  std::vector<Stamp> stamps_;  // the file's, then its libraries'
};

}  // namespace clupy::master
