// The server's worker processes: a pool of at most `capacity` processes started from the
// clients' program images (fetched from the master into a content-addressed cache, verified by
// SHA-256), each running one task at a time, with more queued in its socket, and answering
// with batches of results. A worker that dies fails only the task it was running (named in a
// page of memory it shares with the server) and is replaced on demand; the others are rerun.
// A task past its timeout has its worker killed. Workers' stdout and stderr are forwarded,
// attributed to the task they were running.
//
// This class binds the parts in src/worker to the server's io_context and its master link:
// worker::ImageCache (the images), worker::SpawnedWorker (a process, its fds and pages, its
// output) and worker::Dispatcher (which task goes where, and which fails when a worker dies;
// pure, unit-tested without processes). Owned by the server's io_context thread; not
// thread-safe.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "clupy.pb.h"
#include "worker/dispatch.hpp"
#include "worker/image_cache.hpp"
#include "worker/spawned_worker.hpp"

namespace clupy::server {

namespace asio = boost::asio;

class WorkerPool final : private worker::DispatchOutbox {
 public:
  struct Callbacks {
    std::function<void(wire::TaskResult&& result)> on_result;
    std::function<void(std::uint64_t task_id, bool is_stderr, std::string text)> on_output;
    std::function<void(const std::string& image_sha256)> fetch_image;
    // The folder of a job's shipped libraries (Assignment.library_set, not empty): its workers
    // get it first on their library path, and only its workers do.
    std::function<std::string(const std::string& library_set)> library_directory;
  };

  // Time is read from `clock` (the workers' pace, timeouts' grace, start retries).
  WorkerPool(asio::io_context& io, std::string server_id, unsigned capacity, std::string cache_dir,
             Callbacks callbacks, const base::Clock& clock = base::Clock::real());
  ~WorkerPool();

  void run(wire::Assignment&& task);
  void cancel(std::uint64_t task_id) { dispatcher_.cancel(task_id); }
  void image_chunk(const wire::ImageChunk& chunk);
  void image_failed(const std::string& image_sha256, const std::string& reason);
  // The master is gone: queued tasks are dropped and running ones stopped, unreported.
  void abandon_all();
  // Kills every worker (server shutdown).
  void shutdown() { dispatcher_.shutdown(); }
  // Draining: takes back the tasks not given to a worker yet and returns their ids. Those a
  // worker holds run here (one behind the running task when tasks are long).
  std::vector<std::uint64_t> hand_back_unstarted() { return dispatcher_.hand_back_unstarted(); }
  // Workers start with SIGTERM blocked: under a batch scheduler a signal meant for the server
  // (scancel, a time limit) reaches every process of the job, and the server's draining lets
  // running tasks finish.
  void set_workers_block_sigterm(bool block) { block_sigterm_ = block; }

  // "NAME=value" entries added to every worker's environment from now on (the cluster's
  // services, as the master announced them; the dependency manifest's library folder). When
  // they change, idle workers are retired and busy ones take no new tasks: every task starts
  // in a worker with the current environment.
  void set_worker_environment(std::vector<std::string> entries);

  // What this pool has done since it was made, for the server's /metrics (docs/operations.md).
  struct Counters : worker::Dispatcher::Counters {
    // An image's first use by this process: found verified in the cache directory (hit) or
    // fetched from the master (miss); and the bytes fetched.
    std::uint64_t image_cache_hits = 0;
    std::uint64_t image_cache_misses = 0;
    std::uint64_t image_bytes_fetched = 0;
  };
  Counters counters() const;

  unsigned busy() const { return dispatcher_.busy(); }
  // Tasks given to this pool and not reported yet (waiting, queued in a worker or running).
  std::size_t unfinished() const { return dispatcher_.unfinished(); }
  std::size_t worker_count() const { return dispatcher_.worker_count(); }

 private:
  // worker::DispatchOutbox
  void report(wire::TaskResult&& result) override { callbacks_.on_result(std::move(result)); }
  std::shared_ptr<worker::WorkerProcess> spawn(const std::string& image_sha256,
                                               const std::string& image_name,
                                               const std::string& library_set) override;
  void front_changed(worker::WorkerProcess& worker, const wire::Assignment* front) override;

  void arm_deadline(const std::shared_ptr<worker::SpawnedWorker>& worker, std::uint64_t task_id,
                    std::chrono::milliseconds after);

  asio::io_context& io_;
  const base::Clock& clock_;
  std::string server_id_;
  Callbacks callbacks_;
  worker::ImageCache images_;
  worker::Dispatcher dispatcher_;
  bool block_sigterm_ = false;
  std::vector<std::string> worker_environment_;
};

}  // namespace clupy::server
