#include "master/store_service.hpp"

#include <exception>
#include <filesystem>

#include "clupy/errors.hpp"
#include "common/log.hpp"
#include "store/embedded_redis.hpp"
#include "store/janitor.hpp"
#include "store/redis.hpp"

namespace clupy::master {

namespace {

auto log() { return common::logger("store"); }

// Removals named one by one in the log; the rest of a large sweep is summed up.
constexpr std::size_t kRemovalsLogged = 20;
// Failed job cleanups kept for a retry; a Redis down for days must not grow the master.
constexpr std::size_t kMaxRetries = 10000;

StoreOptions janitor_options(const common::StoreSection& section) {
  StoreOptions options;
  options.redis_url = section.redis;
  options.key_prefix = section.key_prefix;
  options.chunk_size = section.chunk_size;
  // The janitor runs again soon anyway: give up quickly rather than hold up shutdown.
  options.connect_timeout = std::chrono::milliseconds(1000);
  options.retry_window = std::chrono::milliseconds(1000);
  return options;
}

}  // namespace

StoreService::StoreService(const common::StoreSection& section, const std::string& data_dir)
    : section_(section) {
  if (!section_.embedded) {
    // The configuration parser checked the URL's form; the store's parser reads the rest.
    try {
      store::parse_redis_url(section_.redis);
    } catch (const StoreError& e) {
      throw ConfigError(std::string("key 'store.redis': ") + e.what());
    }
  }
  if (section_.embedded) {
    const std::string dir = (std::filesystem::absolute(data_dir) / "store").string();
    store::EmbeddedRedisOptions redis_options;
    // Redis's own limit sits above the janitor's budget, so the janitor acts first.
    if (section_.memory_budget > 0) redis_options.maxmemory_bytes = section_.memory_budget * 2;
    embedded_ = std::make_unique<store::EmbeddedRedis>(dir, redis_options);
    section_.redis = embedded_->url();
    log()->info("store: embedded redis-server (pid {}) on {}", embedded_->pid(), section_.redis);
  }
  options_ = janitor_options(section_);
  store::JanitorPolicy policy;
  policy.memory_budget_bytes = section_.memory_budget;
  policy.idle_ttl = section_.idle_ttl;
  policy.orphan_grace = section_.orphan_grace;
  janitor_ = std::make_unique<store::Janitor>(options_, policy);
  // Clients keep their own defaults for timeouts and retries; only where and how is shared.
  const StoreOptions defaults;
  options_.connect_timeout = defaults.connect_timeout;
  options_.retry_window = defaults.retry_window;
  log()->info(
      "store: {} (key prefix '{}', chunks of {} bytes, budget {}, idle TTL {} s, orphan "
      "grace {} s, sweep every {} s)",
      section_.embedded ? "embedded" : store::parse_redis_url(section_.redis).describe(),
      section_.key_prefix, section_.chunk_size,
      section_.memory_budget == 0 ? std::string("none")
                                  : std::to_string(section_.memory_budget) + " bytes",
      section_.idle_ttl.count() / 1000, section_.orphan_grace.count() / 1000,
      section_.sweep_interval.count() / 1000.0);
  thread_ = std::thread([this] { run(); });
}

StoreService::~StoreService() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  janitor_.reset();
  if (embedded_) embedded_->stop();
}

void StoreService::maintain(std::chrono::steady_clock::time_point now) {
  {
    std::lock_guard lock(mu_);
    if (sweeping_ || sweep_requested_ || now < next_sweep_) return;
    sweep_requested_ = true;
    next_sweep_ = now + section_.sweep_interval;
  }
  wake_.notify_all();
}

void StoreService::job_ended(const std::string& job_id) {
  {
    std::lock_guard lock(mu_);
    jobs_to_clean_.push_back(job_id);
  }
  wake_.notify_all();
}

StoreCounters StoreService::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

void StoreService::run() {
  std::unique_lock lock(mu_);
  while (true) {
    wake_.wait(lock, [&] { return stopping_ || sweep_requested_ || !jobs_to_clean_.empty(); });
    if (stopping_) return;
    if (!jobs_to_clean_.empty()) {
      std::string job = std::move(jobs_to_clean_.front());
      jobs_to_clean_.pop_front();
      lock.unlock();
      const bool done = clean_job(job);
      lock.lock();
      if (!done && jobs_to_retry_.size() < kMaxRetries) jobs_to_retry_.push_back(std::move(job));
      continue;
    }
    sweep_requested_ = false;
    sweeping_ = true;
    // A sweep is when Redis is known to be worth another try: retry failed job cleanups first.
    std::deque<std::string> retries;
    retries.swap(jobs_to_retry_);
    lock.unlock();
    std::deque<std::string> failed;
    for (auto& job : retries)
      if (!clean_job(job)) failed.push_back(std::move(job));
    sweep();
    lock.lock();
    for (auto& job : failed)
      if (jobs_to_retry_.size() < kMaxRetries) jobs_to_retry_.push_back(std::move(job));
    sweeping_ = false;
  }
}

void StoreService::sweep() {
  store::JanitorReport report;
  try {
    report = janitor_->sweep();
  } catch (const std::exception& e) {
    {
      std::lock_guard lock(mu_);
      ++counters_.sweep_failures;
    }
    note_reachable(false, std::string("janitor sweep failed: ") + e.what());
    return;
  }
  note_reachable(true, "");
  std::size_t logged = 0;
  for (const auto& r : report.removed) {
    if (++logged > kRemovalsLogged) break;
    if (r.reason == store::Removal::Reason::kOrphan)
      log()->info("janitor: collected orphan blob {} (its writer stopped {} s ago or more)", r.blob,
                  section_.orphan_grace.count() / 1000);
    else
      log()->info("janitor: removed '{}' ({} bytes): {}", r.name, r.bytes,
                  store::to_string(r.reason));
  }
  if (report.removed.size() > kRemovalsLogged)
    log()->info("janitor: ... and {} more removals", report.removed.size() - kRemovalsLogged);
  if (!report.removed.empty() || report.blobs_deleted > 0) {
    log()->info(
        "janitor: {} removed (idle_ttl {}, over_budget {}, orphan {}); {} blobs deleted, {} "
        "bytes freed; {} files, {} bytes left",
        report.removed.size(), report.count(store::Removal::Reason::kIdleTtl),
        report.count(store::Removal::Reason::kOverBudget),
        report.count(store::Removal::Reason::kOrphan), report.blobs_deleted, report.bytes_freed,
        report.files, report.live_bytes);
  } else {
    log()->debug("janitor: nothing to remove; {} files, {} bytes", report.files, report.live_bytes);
  }
  std::lock_guard lock(mu_);
  ++counters_.sweeps;
  for (const auto& r : report.removed) {
    ++counters_.files_removed[store::to_string(r.reason)];
    counters_.bytes_removed[store::to_string(r.reason)] += r.bytes;
  }
  counters_.blobs_deleted += report.blobs_deleted;
  counters_.chunk_bytes_freed += report.bytes_freed;
  counters_.files = report.files;
  counters_.live_bytes = report.live_bytes;
}

bool StoreService::clean_job(const std::string& job_id) {
  store::JanitorReport report;
  try {
    report = janitor_->remove_job_temporaries(job_id);
  } catch (const std::exception& e) {
    {
      std::lock_guard lock(mu_);
      ++counters_.job_cleanup_failures;
    }
    note_reachable(false, "removing the temporary files of job " + job_id +
                              " failed (retried with the next sweep): " + e.what());
    return false;
  }
  note_reachable(true, "");
  std::uint64_t bytes = 0;
  for (const auto& r : report.removed) bytes += r.bytes;
  if (!report.removed.empty())
    log()->info("janitor: job {} ended: removed {} temporary files ({} bytes) under {}", job_id,
                report.removed.size(), bytes, store::job_temporary_prefix(job_id));
  std::lock_guard lock(mu_);
  ++counters_.job_cleanups;
  counters_.files_removed[store::to_string(store::Removal::Reason::kJobEnded)] +=
      report.removed.size();
  counters_.bytes_removed[store::to_string(store::Removal::Reason::kJobEnded)] += bytes;
  counters_.blobs_deleted += report.blobs_deleted;
  counters_.chunk_bytes_freed += report.bytes_freed;
  return true;
}

void StoreService::note_reachable(bool reachable, const std::string& what) {
  bool was;
  {
    std::lock_guard lock(mu_);
    was = counters_.redis_reachable;
    counters_.redis_reachable = reachable;
  }
  // Loud on a change, quiet while Redis stays down, so a long outage is not a flood.
  if (!reachable) {
    if (was || !warned_)
      log()->warn("store: {}", what);
    else
      log()->debug("store: {}", what);
    warned_ = true;
  } else if (!was && warned_) {
    log()->info("store: Redis at {} is reachable again", redis_url());
  }
}

}  // namespace clupy::master
