#include "deps/job_dependencies.hpp"

#include <filesystem>

#include "base/hex.hpp"
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
}  // namespace

JobDependencies::JobDependencies(boost::asio::io_context& io, std::string cache_dir,
                                 Callbacks callbacks)
    : io_(io),
      cache_dir_(fs::absolute(fs::path(cache_dir) / "libraries").string()),
      callbacks_(std::move(callbacks)),
      libraries_(
          cache_dir_,
          [this](const std::string& sha256, bool ok, const std::string& detail,
                 std::uint64_t received) { library_finished(sha256, ok, detail, received); }),
      packages_(io, [this](const wire::JobPackagesReport& report) { packages_report(report); }) {}

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
    } else if (libraries_.present(library.sha256())) {
      item.set_state(wire::DependencyItem::PRESENT);
    } else if (ec) {
      item.set_state(wire::DependencyItem::FAILED);
      item.set_detail("cannot create " + cache_dir_ + ": " + ec.message());
    } else {
      item.set_state(wire::DependencyItem::INSTALLING);
      item.set_detail("fetching " + std::to_string(library.size()) + " bytes from the master");
      if (libraries_.start(library.sha256()) && callbacks_.fetch_library)
        callbacks_.fetch_library(library.sha256());
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
  return libraries_.chunk(chunk);
}

bool JobDependencies::library_failed(const std::string& sha256, const std::string& reason) {
  return libraries_.failed(sha256, reason);
}

void JobDependencies::connection_lost() {
  packages_.connection_lost();
  libraries_.connection_lost();
  jobs_.clear();  // a new master asks again
}

void JobDependencies::library_finished(const std::string& sha256, bool ok,
                                       const std::string& detail, std::uint64_t received) {
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
        log()->info("job {}: library {} fetched ({} bytes)", job_id, item.name(), received);
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
