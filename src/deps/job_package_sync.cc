#include "deps/job_package_sync.hpp"

#include <boost/asio/post.hpp>

#include "clupy/errors.hpp"
#include "common/log.hpp"
#include "deps/manifest.hpp"
#include "deps/package_sync.hpp"

namespace clupy::deps {

namespace {
auto log() { return common::logger("deps"); }
}  // namespace

JobPackageSync::JobPackageSync(boost::asio::io_context& io, Report report)
    : io_(io), report_(std::move(report)), thread_([this] { run(); }) {}

JobPackageSync::~JobPackageSync() {
  *alive_ = false;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cancel_ = true;
  wake_.notify_all();
  thread_.join();
}

void JobPackageSync::request(const wire::JobPackagesRequest& request) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(request);
  }
  wake_.notify_all();
}

void JobPackageSync::connection_lost() {
  std::lock_guard lock(mu_);
  queue_.clear();
}

void JobPackageSync::post_report(std::uint64_t job_id,
                                 const std::vector<wire::DependencyItem>& items, bool in_progress) {
  wire::JobPackagesReport report;
  report.set_job_id(job_id);
  auto* state = report.mutable_report();
  for (const auto& item : items) *state->add_items() = item;
  state->set_in_progress(in_progress);
  state->set_satisfied(!in_progress && all_satisfied(items));
  if (!in_progress && !state->satisfied()) state->set_summary(summarize(items));
  boost::asio::post(io_, [this, alive = alive_, report = std::move(report)] {
    if (*alive) report_(report);
  });
}

void JobPackageSync::run() {
  for (;;) {
    wire::JobPackagesRequest request;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      request = std::move(queue_.front());
      queue_.pop_front();
    }
    // The master checked the names; they go into a shell command here, so they are checked
    // again where that command runs.
    std::vector<PackageRequirement> packages;
    std::vector<wire::DependencyItem> refused;
    for (const auto& p : request.packages()) {
      try {
        packages.push_back(parse_requirement(
            p.name(), p.relation().empty() ? "" : p.relation() + " " + p.version()));
      } catch (const ConfigError& e) {
        wire::DependencyItem item;
        item.set_kind(wire::DependencyItem::PACKAGE);
        item.set_name(p.name());
        item.set_state(wire::DependencyItem::FAILED);
        item.set_detail(e.what());
        refused.push_back(std::move(item));
      }
    }
    if (!refused.empty()) {
      post_report(request.job_id(), refused, false);
      continue;
    }
    PackageSyncOptions options;
    if (!request.install_command().empty()) options.install_command = request.install_command();
    if (request.install_timeout_ms() > 0)
      options.timeout = std::chrono::milliseconds(request.install_timeout_ms());
    options.cancel = &cancel_;
    const std::uint64_t job = request.job_id();
    options.progress = [this, job](const std::vector<wire::DependencyItem>& items) {
      post_report(job, items, true);
    };
    const auto items = sync_packages(packages, options);
    for (const auto& item : items)
      if (item.state() == wire::DependencyItem::INSTALLED)
        log()->info("job {}: package {} installed ({})", job, item.name(), item.version());
      else if (item.state() == wire::DependencyItem::FAILED)
        log()->warn("job {}: package {}: {}", job, item.name(), item.detail());
    post_report(job, items, false);
  }
}

}  // namespace clupy::deps
