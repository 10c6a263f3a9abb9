// Bringing a machine's system packages to a list of requirements: compare with dpkg's database,
// run the install command once for everything missing or too old, compare again. Blocking; run
// it on a thread of its own. This is the one mechanism behind the master's manifest, and what
// anything else that needs packages on a server (a service's `packages:`) should call.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "clupy.pb.h"
#include "deps/manifest.hpp"

namespace clupy::deps {

struct PackageSyncOptions {
  std::string install_command = kDefaultInstallCommand;  // {packages} is replaced
  std::chrono::milliseconds timeout{600'000};
  // Called on the syncing thread whenever an item's state changes, and at most every
  // kProgressInterval with the installer's latest output line while it runs.
  std::function<void(const std::vector<wire::DependencyItem>&)> progress;
  const std::atomic<bool>* cancel = nullptr;  // true: the installer is killed
};

inline constexpr std::chrono::milliseconds kProgressInterval{250};

// One item per requirement, PRESENT / INSTALLED with the version found, or FAILED saying why
// (the installer's exit code and output tail, or that it ran fine but left the package missing
// or too old). Never throws for a failed install.
std::vector<wire::DependencyItem> sync_packages(const std::vector<PackageRequirement>& packages,
                                                const PackageSyncOptions& options);

// Only the comparison: PRESENT, or FAILED with "not installed" / "1.0 installed, needs >= 2".
std::vector<wire::DependencyItem> check_packages(const std::vector<PackageRequirement>& packages);

// The install command for these packages: `{packages}` replaced by their shell-quoted names.
std::string install_command_for(const std::string& install_command,
                                const std::vector<PackageRequirement>& packages);

// "checking", "present", "installing", "installed", "failed".
const char* state_name(wire::DependencyItem::State state);

// Whether every item is PRESENT or INSTALLED.
bool all_satisfied(const std::vector<wire::DependencyItem>& items);
// "libfoo1: not installed; libbar2: install failed (exit code 1)": what is not satisfied.
std::string summarize(const std::vector<wire::DependencyItem>& items);

}  // namespace clupy::deps
