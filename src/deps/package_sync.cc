#include "deps/package_sync.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "deps/command.hpp"
#include "deps/debian.hpp"

namespace clupy::deps {

namespace {

using Clock = std::chrono::steady_clock;

// One installer per machine (see sync_packages). The lock is released when the object goes.
class MachineInstallLock {
 public:
  ~MachineInstallLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the flock
  }
  // Waits for the lock up to `timeout`, polling `cancel`. False with error() saying why.
  bool acquire(std::chrono::milliseconds timeout, const std::atomic<bool>* cancel) {
    for (const char* path :
         {"/run/lock/clupy-dependency-install.lock", "/tmp/clupy-dependency-install.lock"}) {
      fd_ = ::open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0666);  // flock needs no write access
      if (fd_ >= 0) break;
    }
    if (fd_ < 0) {
      error_ = std::string("cannot open the machine's install lock: ") + std::strerror(errno);
      return false;
    }
    const auto deadline = Clock::now() + timeout;
    while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) {
        error_ = std::string("cannot take the machine's install lock: ") + std::strerror(errno);
        return false;
      }
      if ((cancel != nullptr && cancel->load()) || Clock::now() >= deadline) {
        error_ = "another server on this machine was installing for longer than install_timeout";
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
  }
  const std::string& error() const { return error_; }

 private:
  int fd_ = -1;
  std::string error_;
};

wire::DependencyItem compare(const PackageRequirement& requirement) {
  wire::DependencyItem item;
  item.set_kind(wire::DependencyItem::PACKAGE);
  item.set_name(requirement.name);
  if (!requirement.relation.empty())
    item.set_required(requirement.relation + " " + requirement.version);
  const auto installed = installed_version(requirement.name);
  if (installed) item.set_version(*installed);
  if (requirement_met(requirement, installed)) {
    item.set_state(wire::DependencyItem::PRESENT);
  } else {
    item.set_state(wire::DependencyItem::FAILED);
    item.set_detail(installed ? *installed + " installed, needs " + item.required()
                              : "not installed");
  }
  return item;
}

}  // namespace

std::string install_command_for(const std::string& install_command,
                                const std::vector<PackageRequirement>& packages) {
  std::string names;
  for (const auto& p : packages) {
    check_package_name(p.name);  // also on servers: the names go into a shell command
    names += (names.empty() ? "" : " ") + shell_quote(p.name);
  }
  std::string command = install_command;
  for (auto at = command.find("{packages}"); at != std::string::npos;
       at = command.find("{packages}", at + names.size()))
    command.replace(at, 10, names);
  return command;
}

std::vector<wire::DependencyItem> check_packages(const std::vector<PackageRequirement>& packages) {
  std::vector<wire::DependencyItem> items;
  for (const auto& p : packages) items.push_back(compare(p));
  return items;
}

std::vector<wire::DependencyItem> sync_packages(const std::vector<PackageRequirement>& packages,
                                                const PackageSyncOptions& options) {
  std::vector<wire::DependencyItem> items = check_packages(packages);
  if (all_satisfied(items)) {
    if (options.progress) options.progress(items);
    return items;
  }
  // Servers sharing a machine share its dpkg database, which takes one installer at a time:
  // they take turns, and each looks again once it has its turn (another may have installed
  // what it lacked meanwhile).
  MachineInstallLock lock;
  if (!lock.acquire(options.timeout, options.cancel)) {
    for (auto& item : items)
      if (item.state() != wire::DependencyItem::PRESENT)
        item.set_detail(item.detail() + "; " + lock.error());
    if (options.progress) options.progress(items);
    return items;
  }
  items = check_packages(packages);
  std::vector<PackageRequirement> missing;
  std::vector<std::size_t> missing_at;
  for (std::size_t i = 0; i < items.size(); ++i)
    if (items[i].state() != wire::DependencyItem::PRESENT) {
      missing.push_back(packages[i]);
      missing_at.push_back(i);
    }
  if (missing.empty()) {
    if (options.progress) options.progress(items);
    return items;
  }
  std::string command;
  try {
    command = install_command_for(options.install_command, missing);
  } catch (const std::exception& e) {
    for (std::size_t i : missing_at) items[i].set_detail(e.what());
    if (options.progress) options.progress(items);
    return items;
  }
  for (std::size_t i : missing_at) {
    items[i].set_state(wire::DependencyItem::INSTALLING);
    items[i].set_detail("starting: " + command);
  }
  if (options.progress) options.progress(items);

  CommandOptions run;
  run.timeout = options.timeout;
  run.cancel = options.cancel;
  Clock::time_point last_progress = Clock::now();
  bool unreported = false;  // a line newer than the last progress report
  auto report_if_due = [&] {
    const auto now = Clock::now();
    if (!unreported || !options.progress || now - last_progress < kProgressInterval) return;
    last_progress = now;
    unreported = false;
    options.progress(items);
  };
  run.on_line = [&](const std::string& line) {
    for (std::size_t i : missing_at) items[i].set_detail(line);
    unreported = true;
    report_if_due();
  };
  run.on_idle = report_if_due;  // the last line of a quiet installer still shows
  const CommandResult result = run_shell_command(command, run);

  // What dpkg says now decides, whatever the installer's exit code.
  for (std::size_t k = 0; k < missing_at.size(); ++k) {
    wire::DependencyItem after = compare(missing[k]);
    wire::DependencyItem& item = items[missing_at[k]];
    item.set_version(after.version());
    if (result.started) item.set_exit_code(result.exit_code);
    if (after.state() == wire::DependencyItem::PRESENT && result.succeeded()) {
      item.set_state(wire::DependencyItem::INSTALLED);
      item.set_detail("");
      continue;
    }
    item.set_state(wire::DependencyItem::FAILED);
    std::string why;
    if (!result.started)
      why = "the install command could not start: " + result.error;
    else if (result.timed_out)
      why = result.error;
    else if (!result.succeeded())
      why = "the install command failed (" + result.describe() + ")";
    else
      why = "the install command succeeded but " + after.detail();
    if (after.state() == wire::DependencyItem::PRESENT)
      why += "; the package is present now (" + after.version() + ")";
    else if (result.started && !result.succeeded())
      why += "; " + after.detail();
    if (!result.output_tail.empty()) why += "; output ends: " + result.output_tail;
    item.set_detail(why);
  }
  if (options.progress) options.progress(items);
  return items;
}

const char* state_name(wire::DependencyItem::State state) {
  switch (state) {
    case wire::DependencyItem::CHECKING:
      return "checking";
    case wire::DependencyItem::PRESENT:
      return "present";
    case wire::DependencyItem::INSTALLING:
      return "installing";
    case wire::DependencyItem::INSTALLED:
      return "installed";
    case wire::DependencyItem::FAILED:
      return "failed";
    default:
      return "unknown";
  }
}

bool all_satisfied(const std::vector<wire::DependencyItem>& items) {
  for (const auto& item : items)
    if (item.state() != wire::DependencyItem::PRESENT &&
        item.state() != wire::DependencyItem::INSTALLED)
      return false;
  return true;
}

std::string summarize(const std::vector<wire::DependencyItem>& items) {
  std::string out;
  for (const auto& item : items) {
    if (item.state() == wire::DependencyItem::PRESENT ||
        item.state() == wire::DependencyItem::INSTALLED)
      continue;
    std::string what;
    switch (item.state()) {
      case wire::DependencyItem::CHECKING:
        what = "checking";
        break;
      case wire::DependencyItem::INSTALLING:
        what = item.kind() == wire::DependencyItem::LIBRARY ? "fetching" : "installing";
        if (!item.detail().empty()) what += " (" + item.detail() + ")";
        break;
      default: {
        // The first line is enough in a summary; the item keeps the whole tail.
        std::string detail = item.detail();
        if (auto cut = detail.find("; output ends:"); cut != std::string::npos) detail.erase(cut);
        what = "failed: " + detail;
      }
    }
    out += (out.empty() ? "" : "; ") + item.name() + ": " + what;
  }
  return out;
}

}  // namespace clupy::deps
