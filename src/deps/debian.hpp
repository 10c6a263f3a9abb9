// What dpkg's database says: a package's installed version, which package owns a file, and
// Debian version comparison. Each asks dpkg itself (dpkg-query, dpkg --compare-versions): the
// answers are dpkg's by construction, and libclupy gains no library dependency. Blocking (a
// process each); call from a thread that may wait.
#pragma once

#include <optional>
#include <string>

#include "deps/manifest.hpp"

namespace clupy::deps {

// The installed version of `name` ("ii" in dpkg's database), or nullopt when it is not
// installed (absent, removed, half-installed or config-files only).
std::optional<std::string> installed_version(const std::string& name);

// Whether `installed` stands in `relation` (<<, <=, =, >=, >>) to `required`, by dpkg's rules.
bool version_satisfies(const std::string& installed, const std::string& relation,
                       const std::string& required);

// Whether what is installed meets the requirement; `installed` as installed_version gives it.
bool requirement_met(const PackageRequirement& requirement,
                     const std::optional<std::string>& installed);

// The package owning `path` (dpkg-query -S), e.g. "libc6:amd64", or nullopt.
std::optional<std::string> owning_package(const std::string& path);

}  // namespace clupy::deps
