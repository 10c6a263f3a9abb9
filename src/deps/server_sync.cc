#include "deps/server_sync.hpp"

#include <unistd.h>

#include <boost/asio/post.hpp>
#include <filesystem>
#include <set>

#include "base/hex.hpp"
#include "common/auth.hpp"
#include "common/log.hpp"
#include "deps/manifest.hpp"
#include "deps/package_sync.hpp"

namespace clupy::deps {

namespace {
namespace fs = std::filesystem;
auto log() { return common::logger("deps"); }

bool final_state(const wire::DependencyItem& item) {
  return item.state() == wire::DependencyItem::PRESENT ||
         item.state() == wire::DependencyItem::INSTALLED ||
         item.state() == wire::DependencyItem::FAILED;
}
}  // namespace

ServerSync::ServerSync(boost::asio::io_context& io, std::string cache_dir, Callbacks callbacks,
                       std::chrono::milliseconds recheck_period)
    : io_(io),
      cache_dir_(fs::absolute(fs::path(cache_dir) / "libraries").string()),
      callbacks_(std::move(callbacks)),
      libraries_(
          cache_dir_,
          [this](const std::string& sha256, bool ok, const std::string& detail,
                 std::uint64_t received) { library_finished(sha256, ok, detail, received); }),
      recheck_period_(recheck_period),
      recheck_timer_(io) {
  arm_recheck();
}

ServerSync::~ServerSync() {
  recheck_timer_.cancel();
  cancel_ = true;
  join_installer();
  *alive_ = false;
}

void ServerSync::join_installer() {
  if (installer_.joinable()) installer_.join();
}

bool ServerSync::satisfied() const {
  if (pending_) return false;
  if (manifest_.version().empty()) return true;
  return !running_ && report_.satisfied();
}

void ServerSync::apply(const wire::DependencyManifest& manifest) {
  if (running_) {
    if (manifest.version() != manifest_.version())
      pending_ = manifest;
    else
      pending_.reset();
    send_report();
    return;
  }
  if (manifest.version() == manifest_.version() && report_.satisfied()) {
    send_report();  // a re-registration: the master wants to hear it again
    return;
  }
  start(manifest);
}

void ServerSync::start(const wire::DependencyManifest& manifest) {
  join_installer();
  manifest_ = manifest;
  pending_.reset();
  ++run_;
  report_.Clear();
  report_.set_manifest_version(manifest.version());
  if (manifest.version().empty()) {
    report_.set_satisfied(true);
    library_directory_.clear();
    running_ = false;
    if (callbacks_.libraries_ready) callbacks_.libraries_ready("");
    send_report();
    return;
  }
  running_ = true;
  report_.set_in_progress(true);
  log()->info("syncing dependencies to manifest {} ({} package(s), {} librar(y/ies))",
              manifest.version().substr(0, 12), manifest.packages_size(),
              manifest.libraries_size());
  for (const auto& p : manifest.packages()) {
    auto* item = report_.add_items();
    item->set_kind(wire::DependencyItem::PACKAGE);
    item->set_name(p.name());
    if (!p.relation().empty()) item->set_required(p.relation() + " " + p.version());
    item->set_state(wire::DependencyItem::CHECKING);
  }
  std::error_code ec;
  fs::create_directories(cache_dir_, ec);
  for (const auto& library : manifest.libraries()) {
    auto* item = report_.add_items();
    item->set_kind(wire::DependencyItem::LIBRARY);
    item->set_name(library.name());
    item->set_required("sha256:" + base::to_hex(library.sha256()).substr(0, 16));
    if (libraries_.present(library.sha256())) {
      item->set_state(wire::DependencyItem::PRESENT);
      continue;
    }
    if (ec) {
      item->set_state(wire::DependencyItem::FAILED);
      item->set_detail("cannot create " + cache_dir_ + ": " + ec.message());
      continue;
    }
    item->set_state(wire::DependencyItem::INSTALLING);
    item->set_detail("fetching " + std::to_string(library.size()) + " bytes from the master");
    if (libraries_.start(library.sha256()) && callbacks_.fetch_library)
      callbacks_.fetch_library(library.sha256());
  }
  packages_running_ = manifest.packages_size() > 0;
  if (packages_running_) {
    PackageSyncOptions options;
    options.install_command = manifest.install_command();
    options.timeout = std::chrono::milliseconds(manifest.install_timeout_ms());
    options.cancel = &cancel_;
    const std::uint64_t run = run_;
    std::weak_ptr<bool> alive = alive_;
    options.progress = [this, run, alive](const std::vector<wire::DependencyItem>& items) {
      boost::asio::post(io_, [this, run, alive, items] {
        if (auto a = alive.lock(); a && *a) packages_progress(run, items);
      });
    };
    installer_ = std::thread([this, run, alive, options, packages = packages_of(manifest)] {
      auto items = sync_packages(packages, options);
      boost::asio::post(io_, [this, run, alive, items = std::move(items)]() mutable {
        if (auto a = alive.lock(); a && *a) packages_done(run, std::move(items));
      });
    });
  }
  send_report();
  finish_if_done();
}

void ServerSync::packages_progress(std::uint64_t run, std::vector<wire::DependencyItem> items) {
  if (run != run_ || !packages_running_) return;
  for (std::size_t i = 0; i < items.size() && static_cast<int>(i) < report_.items_size(); ++i)
    *report_.mutable_items(static_cast<int>(i)) = std::move(items[i]);
  send_report();
}

void ServerSync::packages_done(std::uint64_t run, std::vector<wire::DependencyItem> items) {
  if (run != run_) return;
  packages_running_ = false;
  for (std::size_t i = 0; i < items.size() && static_cast<int>(i) < report_.items_size(); ++i) {
    const auto& item = items[i];
    if (item.state() == wire::DependencyItem::INSTALLED)
      log()->info("package {} installed ({})", item.name(), item.version());
    else if (item.state() == wire::DependencyItem::FAILED)
      log()->warn("package {} not satisfied: {}", item.name(), item.detail());
    *report_.mutable_items(static_cast<int>(i)) = item;
  }
  finish_if_done();
}

bool ServerSync::library_chunk(const wire::ImageChunk& chunk) { return libraries_.chunk(chunk); }

bool ServerSync::library_failed(const std::string& sha256, const std::string& reason) {
  return libraries_.failed(sha256, reason);
}

void ServerSync::connection_lost() { libraries_.connection_lost(); }

void ServerSync::library_finished(const std::string& sha256, bool ok, const std::string& detail,
                                  std::uint64_t received) {
  // The item is the library of the current manifest with this digest (if it still is one).
  for (auto& item : *report_.mutable_items()) {
    if (item.kind() != wire::DependencyItem::LIBRARY ||
        item.state() != wire::DependencyItem::INSTALLING)
      continue;
    for (const auto& library : manifest_.libraries()) {
      if (library.sha256() != sha256 || library.name() != item.name()) continue;
      item.set_state(ok ? wire::DependencyItem::INSTALLED : wire::DependencyItem::FAILED);
      item.set_detail(detail);
      if (ok)
        log()->info("library {} fetched ({} bytes)", item.name(), received);
      else
        log()->warn("library {} not fetched: {}", item.name(), detail);
    }
  }
  finish_if_done();
}

void ServerSync::finish_if_done() {
  if (!running_) return;
  for (const auto& item : report_.items())
    if (!final_state(item)) {
      send_report();
      return;
    }
  std::vector<wire::DependencyItem> items(report_.items().begin(), report_.items().end());
  bool satisfied = all_satisfied(items);
  std::string summary = summarize(items);
  if (satisfied && manifest_.libraries_size() > 0) {
    try {
      library_directory_ = make_library_set(manifest_);
    } catch (const std::exception& e) {
      satisfied = false;
      summary = std::string("cannot build the library folder: ") + e.what();
    }
  } else if (satisfied) {
    library_directory_.clear();
  }
  running_ = false;
  report_.set_in_progress(false);
  report_.set_satisfied(satisfied);
  report_.set_summary(summary);
  if (satisfied) {
    log()->info("dependencies satisfied (manifest {})", manifest_.version().substr(0, 12));
    if (callbacks_.libraries_ready) callbacks_.libraries_ready(library_directory_);
  } else {
    log()->warn("dependencies not satisfied (manifest {}): {}", manifest_.version().substr(0, 12),
                summary);
  }
  if (pending_) {
    send_report();
    wire::DependencyManifest next = std::move(*pending_);
    pending_.reset();
    start(next);
    return;
  }
  send_report();
}

void ServerSync::send_report() {
  if (callbacks_.report) callbacks_.report(report_);
}

void ServerSync::stop() {
  stopped_ = true;
  recheck_timer_.cancel();
}

void ServerSync::arm_recheck() {
  if (recheck_period_.count() <= 0 || stopped_) return;
  recheck_timer_.expires_after(recheck_period_);
  std::weak_ptr<bool> alive = alive_;
  recheck_timer_.async_wait([this, alive](const boost::system::error_code& error) {
    auto a = alive.lock();
    if (error || !a || !*a) return;
    recheck();
    arm_recheck();
  });
}

void ServerSync::recheck() {
  if (running_ || rechecking_ || pending_) return;  // a sync is on its way anyway
  if (manifest_.version().empty()) {
    prune_library_cache();
    return;
  }
  if (!report_.satisfied()) {
    log()->info("dependencies still not satisfied (manifest {}): trying again",
                manifest_.version().substr(0, 12));
    ++recheck_counters_.resyncs;
    start(manifest_);
    return;
  }
  // Quietly: the server keeps taking tasks while dpkg's database and the digests are read.
  ++recheck_counters_.rechecks;
  rechecking_ = true;
  join_installer();
  std::vector<std::pair<std::string, std::string>> libraries;  // name, SHA-256
  for (const auto& library : manifest_.libraries())
    libraries.emplace_back(library.name(), library.sha256());
  std::vector<std::string> paths;
  for (const auto& [name, sha] : libraries) paths.push_back(libraries_.path(sha));
  const std::uint64_t run = run_;
  std::weak_ptr<bool> alive = alive_;
  installer_ = std::thread([this, run, alive, packages = packages_of(manifest_),
                            libraries = std::move(libraries), paths = std::move(paths)] {
    auto items = packages.empty() ? std::vector<wire::DependencyItem>{} : check_packages(packages);
    std::vector<std::string> missing;
    for (std::size_t i = 0; i < libraries.size(); ++i)
      if (!file_has_digest(paths[i], libraries[i].second)) missing.push_back(libraries[i].first);
    boost::asio::post(
        io_, [this, run, alive, items = std::move(items), missing = std::move(missing)]() mutable {
          if (auto a = alive.lock(); a && *a)
            recheck_done(run, std::move(items), std::move(missing));
        });
  });
}

void ServerSync::recheck_done(std::uint64_t run, std::vector<wire::DependencyItem> packages,
                              std::vector<std::string> libraries_missing) {
  rechecking_ = false;
  if (run != run_ || running_) return;  // a newer manifest is being synced
  if (all_satisfied(packages) && libraries_missing.empty()) {
    prune_library_cache();
    return;
  }
  std::string what = all_satisfied(packages) ? "" : summarize(packages);
  for (const auto& name : libraries_missing)
    what += (what.empty() ? "" : "; ") + name + ": missing or changed in the cache";
  log()->warn("dependencies changed on this machine since the last sync ({}): syncing again", what);
  ++recheck_counters_.resyncs;
  start(manifest_);
}

void ServerSync::prune_library_cache() {
  std::error_code ec;
  const fs::path sets = fs::path(cache_dir_) / "sets";
  if (!fs::is_directory(cache_dir_, ec)) return;
  const auto now = fs::file_time_type::clock::now();
  if (!library_directory_.empty()) fs::last_write_time(library_directory_, now, ec);  // in use
  if (callbacks_.folders_in_use)
    for (const auto& folder : callbacks_.folders_in_use()) fs::last_write_time(folder, now, ec);
  const auto unused_since = now - 3 * recheck_period_;
  std::set<std::string> linked;  // file names of the libraries the remaining folders link to
  for (const auto& set : fs::directory_iterator(sets, ec)) {
    std::error_code entry_ec;
    const bool current = set.path().string() == library_directory_;
    if (!current && fs::last_write_time(set.path(), entry_ec) < unused_since && !entry_ec) {
      if (fs::remove_all(set.path(), entry_ec) != static_cast<std::uintmax_t>(-1) && !entry_ec) {
        ++recheck_counters_.sets_removed;
        log()->info("removed the library folder {} (unused)", set.path().filename().string());
        continue;
      }
    }
    for (const auto& link : fs::directory_iterator(set.path(), entry_ec))
      if (std::error_code link_ec; fs::is_symlink(link.symlink_status(link_ec)))
        linked.insert(fs::read_symlink(link.path(), link_ec).filename().string());
  }
  for (const auto& file : fs::directory_iterator(cache_dir_, ec)) {
    std::error_code entry_ec;
    if (!file.is_regular_file(entry_ec)) continue;
    const std::string name = file.path().filename().string();
    const std::string digest = name.substr(0, name.find(".part-"));
    if (linked.contains(name) || digest.size() != 64) continue;
    if (fs::last_write_time(file.path(), entry_ec) >= unused_since || entry_ec) continue;
    if (fs::remove(file.path(), entry_ec)) {
      ++recheck_counters_.libraries_removed;
      log()->info("removed the cached library {} (no library folder links to it)", name);
    }
  }
}

std::string ServerSync::make_library_set(const wire::DependencyManifest& manifest) {
  return make_library_folder(cache_dir_, manifest.version().substr(0, 32), manifest.libraries());
}

std::string make_library_folder(
    const std::string& cache_dir, const std::string& folder_name,
    const google::protobuf::RepeatedPtrField<wire::DependencyLibrary>& libraries) {
  // Links, not copies: a set costs nothing, and a file is stored once for all versions.
  const fs::path final_dir = fs::path(cache_dir) / "sets" / folder_name;
  if (fs::is_directory(final_dir)) return final_dir.string();
  const fs::path staging =
      fs::path(cache_dir) / "sets" / (".staging-" + base::to_hex(common::random_bytes(6)));
  fs::create_directories(staging);
  for (const auto& library : libraries)
    fs::create_symlink(fs::path("../..") / base::to_hex(library.sha256()),
                       staging / library.name());
  std::error_code ec;
  fs::rename(staging, final_dir, ec);
  if (ec) {
    // Another server sharing this cache made the same set first: use theirs.
    fs::remove_all(staging, ec);
    if (!fs::is_directory(final_dir))
      throw std::runtime_error("cannot create " + final_dir.string());
  }
  return final_dir.string();
}

}  // namespace clupy::deps
