// The master's dependency manifest (clupy.master.dependency.yaml, docs/dependencies.md): the
// system packages every server must have and the library files the master ships to them.
// Parsing rejects unknown keys and bad values with "<file>:<line>: key '<key>': <what>".
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "clupy.pb.h"

namespace clupy::deps {

// A package and, optionally, the versions it may have. `relation` is one of dpkg's <<, <=, =,
// >=, >> (empty: any version); a bare version in the file means ">=" (a newer patch release is
// always fine).
struct PackageRequirement {
  std::string name;
  std::string relation;
  std::string version;
  // "libfoo1 (>= 1.2)" or "libfoo1".
  std::string describe() const;
  bool operator==(const PackageRequirement&) const = default;
};

// A file shipped from the master: `name` is what servers call it in the directory on their
// workers' library path (the file name of `path` unless given), `sha256` its 32-byte digest.
struct LibraryFile {
  std::string path;  // absolute, on the master
  std::string name;
  std::string sha256;
  std::uint64_t size = 0;
};

inline constexpr const char* kDefaultInstallCommand =
    "apt-get install -y --no-install-recommends {packages}";

struct Manifest {
  std::vector<PackageRequirement> packages;
  std::vector<LibraryFile> libraries;
  std::string install_command = kDefaultInstallCommand;
  std::chrono::milliseconds install_timeout{600'000};
  bool allow_client_packages = false;
  // Whether a job may ship libraries from its client's machine, and the largest it may ship.
  bool allow_client_libraries = false;
  std::size_t client_library_max_size = std::size_t{64} << 20;
  // Hex SHA-256 of the content that matters to servers (packages, libraries by their hashes,
  // the install command and timeout): a comment or a reordered key does not change it, a new
  // library build does. Empty for "no manifest".
  std::string version;

  bool empty() const { return packages.empty() && libraries.empty(); }
};

// Parses the manifest's YAML. Library paths are relative to `base_dir` (the manifest's folder);
// each library is read and hashed here. Throws ConfigError naming the file, line and key.
Manifest parse_manifest(const std::string& yaml, const std::string& source_name,
                        const std::string& base_dir);
// Reads and parses the file. Throws ConfigError (also when it cannot be read).
Manifest load_manifest(const std::string& path);

// Checks a package name (Debian's rules, optionally ":arch") and a relation/version pair as
// written in a dependency file: ">= 1.2", ">=1.2", "1.2", "= 1:2.3-4". Throw ConfigError. The
// names and versions end up in a shell command, so these rules are also what keeps it safe.
void check_package_name(const std::string& name);
PackageRequirement parse_requirement(const std::string& name, const std::string& constraint);

// A library a job ships from its client's machine: by `soname` (the file this process loaded
// for it) or by `path` (relative to the dependency file's folder), exactly one of them. `name`
// is what workers load it by: the soname, or for a path the file's DT_SONAME (else its name).
struct ClientLibrary {
  std::string soname;
  std::string path;
  std::string name;
};

// A job's own needs (clupy.client.dependency.yaml, docs/dependencies.md): packages that the
// servers running its tasks install first, and libraries shipped from the client, when the
// master's manifest allows it.
struct ClientDependencies {
  std::vector<PackageRequirement> packages;
  std::vector<ClientLibrary> libraries;
};
// The same rules and messages as the manifest's `packages:`. Throw ConfigError.
// Paths of `libraries:` are made absolute against `base_dir`.
ClientDependencies parse_client_dependencies(const std::string& yaml,
                                             const std::string& source_name,
                                             const std::string& base_dir = ".");
ClientDependencies load_client_dependencies(const std::string& path);

// The manifest as the master announces it to servers.
void to_wire(const Manifest& manifest, wire::DependencyManifest& out);
std::vector<PackageRequirement> packages_of(const wire::DependencyManifest& manifest);

// The SHA-256 (32 bytes) naming a job's set of shipped libraries, computed alike by the master
// (Assignment.library_set) and servers (the set's folder): names and digests, in name order.
// Empty for no libraries.
std::string library_set_digest(
    const google::protobuf::RepeatedPtrField<wire::DependencyLibrary>& libraries);
// Whether `name` can be a library's file name on a server (no '/', not "." or "..", printable).
bool is_library_file_name(const std::string& name);

}  // namespace clupy::deps
