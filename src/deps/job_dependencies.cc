#include "deps/job_dependencies.hpp"

#include <filesystem>
#include <fstream>

#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "common/auth.hpp"
#include "common/log.hpp"
#include "deps/manifest.hpp"
#include "deps/package_sync.hpp"
#include "deps/server_sync.hpp"

namespace clupy::deps {

namespace {
namespace fs = std::filesystem;
auto log() { return common::logger("deps"); }

bool final_state(const wire::DependencyItem& item) {
  return item.state() == wire::DependencyItem::PRESENT ||
         item.state() == wire::DependencyItem::INSTALLED ||
         item.state() == wire::DependencyItem::FAILED;
}

bool file_has_digest(const std::string& path, const std::string& sha256) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  auto digest = base::sha256_file(path);
  return digest && *digest == sha256;
}
}  // namespace

JobDependencies::JobDependencies(boost::asio::io_context& io, std::string cache_dir,
                                 Callbacks callbacks)
    : io_(io),
      cache_dir_(fs::absolute(fs::path(cache_dir) / "libraries").string()),
      callbacks_(std::move(callbacks)),
      packages_(io, [this](const wire::JobPackagesReport& report) { packages_report(report); }) {}

JobDependencies::~JobDependencies() {
  for (auto& [sha, fetch] : fetches_) {
    std::error_code ignored;  // a partial download is worthless
    fs::remove(fetch.partial, ignored);
  }
}

std::string JobDependencies::library_path(const std::string& sha256) const {
  return cache_dir_ + "/" + base::to_hex(sha256);
}

std::string JobDependencies::folder_of(const std::string& library_set) const {
  return cache_dir_ + "/sets/job-" + base::to_hex(library_set).substr(0, 32);
}

void JobDependencies::request(const wire::JobPackagesRequest& request) {
  Job& job = jobs_[request.job_id()];
  job = Job{};
  job.request = request;
  job.packages_done = request.packages_size() == 0;
  if (!job.packages_done) {
    for (const auto& p : request.packages()) {
      wire::DependencyItem item;
      item.set_kind(wire::DependencyItem::PACKAGE);
      item.set_name(p.name());
      item.set_state(wire::DependencyItem::CHECKING);
      job.packages.push_back(std::move(item));
    }
    wire::JobPackagesRequest packages_only = request;
    packages_only.clear_libraries();
    packages_.request(packages_only);
  }
  std::error_code ec;
  if (request.libraries_size() > 0) fs::create_directories(cache_dir_, ec);
  for (const auto& library : request.libraries()) {
    wire::DependencyItem item;
    item.set_kind(wire::DependencyItem::LIBRARY);
    item.set_name(library.name());
    item.set_required("sha256:" + base::to_hex(library.sha256()).substr(0, 16));
    if (!is_library_file_name(library.name()) || library.sha256().size() != 32) {
      item.set_state(wire::DependencyItem::FAILED);
      item.set_detail("not a library's file name with a SHA-256");
    } else if (file_has_digest(library_path(library.sha256()), library.sha256())) {
      item.set_state(wire::DependencyItem::PRESENT);
    } else if (ec) {
      item.set_state(wire::DependencyItem::FAILED);
      item.set_detail("cannot create " + cache_dir_ + ": " + ec.message());
    } else {
      item.set_state(wire::DependencyItem::INSTALLING);
      item.set_detail("fetching " + std::to_string(library.size()) + " bytes from the master");
      if (!fetches_.contains(library.sha256())) {
        Fetch& fetch = fetches_[library.sha256()];
        fetch.partial =
            library_path(library.sha256()) + ".part-" + base::to_hex(common::random_bytes(6));
        std::ofstream(fetch.partial, std::ios::binary | std::ios::trunc);
        if (callbacks_.fetch_library) callbacks_.fetch_library(library.sha256());
      }
    }
    job.libraries.push_back(std::move(item));
  }
  send(request.job_id());
}

void JobDependencies::packages_report(const wire::JobPackagesReport& report) {
  auto it = jobs_.find(report.job_id());
  if (it == jobs_.end()) return;
  Job& job = it->second;
  job.packages.assign(report.report().items().begin(), report.report().items().end());
  job.packages_done = !report.report().in_progress();
  send(report.job_id());
}

bool JobDependencies::library_chunk(const wire::ImageChunk& chunk) {
  auto it = fetches_.find(chunk.image_sha256());
  if (it == fetches_.end()) return false;
  Fetch& fetch = it->second;
  if (chunk.offset() != fetch.received) {
    library_finished(chunk.image_sha256(), false, "the master sent the library out of order");
    return true;
  }
  {
    std::ofstream out(fetch.partial, std::ios::binary | std::ios::app);
    out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    if (!out) {
      library_finished(chunk.image_sha256(), false, "cannot write " + fetch.partial);
      return true;
    }
  }
  fetch.received += chunk.data().size();
  if (!chunk.last()) return true;
  if (!file_has_digest(fetch.partial, chunk.image_sha256())) {
    library_finished(chunk.image_sha256(), false,
                     "the fetched bytes do not match the library's SHA-256");
    return true;
  }
  std::error_code ec;
  fs::permissions(fetch.partial,
                  fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read |
                      fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                  ec);
  fs::rename(fetch.partial, library_path(chunk.image_sha256()), ec);
  library_finished(chunk.image_sha256(), !ec, ec ? "cannot store it: " + ec.message() : "");
  return true;
}

bool JobDependencies::library_failed(const std::string& sha256, const std::string& reason) {
  if (!fetches_.contains(sha256)) return false;
  library_finished(sha256, false, "the master cannot send it: " + reason);
  return true;
}

void JobDependencies::connection_lost() {
  packages_.connection_lost();
  std::vector<std::string> pending;
  for (const auto& [sha, fetch] : fetches_) pending.push_back(sha);
  for (const auto& sha : pending)
    library_finished(sha, false, "the connection to the master was lost while fetching it");
  jobs_.clear();  // a new master asks again
}

void JobDependencies::library_finished(const std::string& sha256, bool ok,
                                       const std::string& detail) {
  auto it = fetches_.find(sha256);
  if (it == fetches_.end()) return;
  const Fetch fetch = it->second;
  fetches_.erase(it);
  if (!ok) {
    std::error_code ignored;  // the partial file is garbage either way
    fs::remove(fetch.partial, ignored);
  }
  std::vector<std::uint64_t> changed;
  for (auto& [job_id, job] : jobs_) {
    bool touched = false;
    for (int i = 0; i < job.request.libraries_size(); ++i) {
      auto& item = job.libraries[static_cast<std::size_t>(i)];
      if (job.request.libraries(i).sha256() != sha256 ||
          item.state() != wire::DependencyItem::INSTALLING)
        continue;
      item.set_state(ok ? wire::DependencyItem::INSTALLED : wire::DependencyItem::FAILED);
      item.set_detail(detail);
      touched = true;
      if (ok)
        log()->info("job {}: library {} fetched ({} bytes)", job_id, item.name(), fetch.received);
      else
        log()->warn("job {}: library {} not fetched: {}", job_id, item.name(), detail);
    }
    if (touched) changed.push_back(job_id);
  }
  for (std::uint64_t job_id : changed) send(job_id);
}

void JobDependencies::send(std::uint64_t job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  Job& job = it->second;
  std::vector<wire::DependencyItem> items = job.packages;
  items.insert(items.end(), job.libraries.begin(), job.libraries.end());
  bool in_progress = !job.packages_done;
  for (const auto& item : job.libraries)
    if (!final_state(item)) in_progress = true;
  bool satisfied = !in_progress && all_satisfied(items);
  std::string summary = in_progress || satisfied ? "" : summarize(items);
  if (satisfied && job.request.libraries_size() > 0) {
    const std::string digest = library_set_digest(job.request.libraries());
    try {
      const std::string folder = make_library_folder(
          cache_dir_, "job-" + base::to_hex(digest).substr(0, 32), job.request.libraries());
      std::error_code ec;
      fs::last_write_time(folder, fs::file_time_type::clock::now(), ec);
      folders_[folder] = std::chrono::steady_clock::now();
    } catch (const std::exception& e) {
      satisfied = false;
      summary = std::string("cannot build the job's library folder: ") + e.what();
    }
  }
  wire::JobPackagesReport report;
  report.set_job_id(job_id);
  auto* state = report.mutable_report();
  for (auto& item : items) *state->add_items() = std::move(item);
  state->set_in_progress(in_progress);
  state->set_satisfied(satisfied);
  if (!in_progress && !satisfied) state->set_summary(summary);
  if (!in_progress) jobs_.erase(it);
  if (callbacks_.report) callbacks_.report(report);
}

std::string JobDependencies::library_directory(const std::string& library_set) {
  if (library_set.empty()) return "";
  const std::string folder = folder_of(library_set);
  std::error_code ec;
  fs::last_write_time(folder, fs::file_time_type::clock::now(), ec);
  folders_[folder] = std::chrono::steady_clock::now();
  return folder;
}

std::vector<std::string> JobDependencies::folders_in_use() const {
  std::vector<std::string> folders;
  const auto since = std::chrono::steady_clock::now() - std::chrono::hours(24);
  for (const auto& [folder, used] : folders_)
    if (used >= since) folders.push_back(folder);
  return folders;
}

}  // namespace clupy::deps
