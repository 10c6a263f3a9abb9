#include "server/workers.hpp"

#include <unistd.h>

#include "base/hex.hpp"
#include "common/log.hpp"

namespace clupy::server {

namespace {
auto log() { return common::logger("server"); }

// How soon to look again when a task's deadline passes while the progress page says it is no
// longer running (its result is on the way).
constexpr auto kResultGrace = std::chrono::milliseconds(5);

std::string host_name() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}
}  // namespace

WorkerPool::WorkerPool(asio::io_context& io, std::string server_id, unsigned capacity,
                       std::string cache_dir, Callbacks callbacks, const base::Clock& clock)
    : io_(io),
      clock_(clock),
      server_id_(std::move(server_id)),
      callbacks_(std::move(callbacks)),
      images_(std::move(cache_dir)),
      dispatcher_(*this, server_id_, host_name(), capacity) {}

WorkerPool::~WorkerPool() { shutdown(); }

WorkerPool::Counters WorkerPool::counters() const {
  Counters counters;
  static_cast<worker::Dispatcher::Counters&>(counters) = dispatcher_.counters();
  counters.image_cache_hits = images_.counters().hits;
  counters.image_cache_misses = images_.counters().misses;
  counters.image_bytes_fetched = images_.counters().bytes_fetched;
  return counters;
}

void WorkerPool::run(wire::Assignment&& task) {
  const std::string& sha = task.image_sha256();
  if (sha.size() == 32) {
    switch (images_.need(sha)) {
      case worker::ImageCache::Need::kReady:
        dispatcher_.image_ready(sha, clock_.now());
        break;
      case worker::ImageCache::Need::kFetch:
        callbacks_.fetch_image(sha);
        break;
      case worker::ImageCache::Need::kFetching:
        break;
    }
  }
  dispatcher_.add(std::move(task), clock_.now());
}

void WorkerPool::image_chunk(const wire::ImageChunk& chunk) {
  std::string error;
  switch (
      images_.add_chunk(chunk.image_sha256(), chunk.offset(), chunk.data(), chunk.last(), error)) {
    case worker::ImageCache::ChunkResult::kReady:
      dispatcher_.image_ready(chunk.image_sha256(), clock_.now());
      break;
    case worker::ImageCache::ChunkResult::kFailed:
      image_failed(chunk.image_sha256(), error);
      break;
    case worker::ImageCache::ChunkResult::kIgnored:
    case worker::ImageCache::ChunkResult::kMore:
      break;
  }
}

void WorkerPool::image_failed(const std::string& image_sha256, const std::string& reason) {
  images_.fetch_failed(image_sha256);
  log()->error("cannot get program image {}: {}", base::to_hex(image_sha256).substr(0, 16), reason);
  dispatcher_.image_failed(image_sha256, reason);
}

void WorkerPool::abandon_all() {
  dispatcher_.abandon_all();
  images_.forget_fetches();
}

void WorkerPool::set_worker_environment(std::vector<std::string> entries) {
  if (entries == worker_environment_) return;
  worker_environment_ = std::move(entries);
  dispatcher_.environment_changed(clock_.now());
}

std::shared_ptr<worker::WorkerProcess> WorkerPool::spawn(const std::string& image_sha256,
                                                         const std::string& image_name,
                                                         const std::string& library_set) {
  worker::SpawnOptions options;
  if (!library_set.empty() && callbacks_.library_directory)
    options.library_directory = callbacks_.library_directory(library_set);
  options.path = images_.path(image_sha256);
  options.name = image_name;
  options.server_id = server_id_;
  options.environment = worker_environment_;
  options.block_sigterm = block_sigterm_;
  worker::SpawnedWorker::Handlers handlers;
  handlers.on_message = [this](worker::SpawnedWorker& w, wire::Envelope& message) {
    dispatcher_.worker_message(w, message, clock_.now());
  };
  handlers.on_closing = [this](worker::SpawnedWorker& w) { dispatcher_.worker_closing(w); };
  handlers.on_exited = [this](worker::SpawnedWorker& w, const worker::WorkerExit& exit) {
    dispatcher_.worker_exited(w, exit, clock_.now());
  };
  handlers.on_output = callbacks_.on_output;
  auto process = worker::SpawnedWorker::spawn(io_, options, std::move(handlers));
  if (process)
    log()->debug("started worker {} for image {}", process->pid(),
                 base::to_hex(image_sha256).substr(0, 16));
  return process;
}

void WorkerPool::front_changed(worker::WorkerProcess& process, const wire::Assignment* front) {
  // Every process of this pool is a SpawnedWorker (spawn() above).
  auto& spawned = static_cast<worker::SpawnedWorker&>(process);
  spawned.disarm_deadline();
  if (!front) return;
  spawned.set_output_owner(front->task_id());
  if (front->timeout_ms() == 0) return;
  arm_deadline(spawned.shared_from_this(), front->task_id(),
               std::chrono::milliseconds(front->timeout_ms()));
}

void WorkerPool::arm_deadline(const std::shared_ptr<worker::SpawnedWorker>& worker,
                              std::uint64_t task_id, std::chrono::milliseconds after) {
  std::weak_ptr<worker::SpawnedWorker> weak = worker;
  worker->arm_deadline(after, [this, weak, task_id] {
    auto w = weak.lock();
    if (!w) return;
    if (dispatcher_.deadline_passed(*w, task_id) == worker::Dispatcher::Deadline::kLookAgain)
      arm_deadline(w, task_id, kResultGrace);
  });
}

}  // namespace clupy::server
