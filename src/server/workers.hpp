// The server's worker processes: a pool of at most `capacity` processes started from the
// clients' program images (fetched from the master into a content-addressed cache, verified by
// SHA-256), each running one task at a time, with more queued in its socket, and answering
// with batches of results. A worker that dies fails only the task it was running (named in a
// page of memory it shares with the server) and is replaced on demand; the others are rerun.
// A task past its timeout has its worker killed. Workers' stdout and stderr are forwarded,
// attributed to the task they were running. Owned by the server's io_context thread; not
// thread-safe.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "clupy.pb.h"
#include "common/connection.hpp"

namespace clupy::server {

namespace asio = boost::asio;

class WorkerPool {
 public:
  struct Callbacks {
    std::function<void(wire::TaskResult&& result)> on_result;
    std::function<void(std::uint64_t task_id, bool is_stderr, std::string text)> on_output;
    std::function<void(const std::string& image_sha256)> fetch_image;
    // The folder of a job's shipped libraries (Assignment.library_set, not empty): its workers
    // get it first on their library path, and only its workers do.
    std::function<std::string(const std::string& library_set)> library_directory;
  };

  WorkerPool(asio::io_context& io, std::string server_id, unsigned capacity, std::string cache_dir,
             Callbacks callbacks);
  ~WorkerPool();

  void run(wire::Assignment&& task);
  void cancel(std::uint64_t task_id);
  void image_chunk(const wire::ImageChunk& chunk);
  void image_failed(const std::string& image_sha256, const std::string& reason);
  // The master is gone: queued tasks are dropped and running ones stopped, unreported.
  void abandon_all();
  // Kills every worker (server shutdown).
  void shutdown();
  // Draining: takes back the tasks not given to a worker yet and returns their ids. Those a
  // worker holds run here (one behind the running task when tasks are long).
  std::vector<std::uint64_t> hand_back_unstarted();
  // Workers start with SIGTERM blocked: under a batch scheduler a signal meant for the server
  // (scancel, a time limit) reaches every process of the job, and the server's draining lets
  // running tasks finish.
  void set_workers_block_sigterm(bool block) { workers_block_sigterm_ = block; }

  // "NAME=value" entries added to every worker's environment from now on (the cluster's
  // services, as the master announced them; the dependency manifest's library folder). When
  // they change, idle workers are retired and busy ones take no new tasks: every task starts
  // in a worker with the current environment.
  void set_worker_environment(std::vector<std::string> entries);

  // What this pool has done since it was made, for the server's /metrics (docs/operations.md).
  struct Counters {
    std::uint64_t workers_started = 0;
    // Started to take the place of a worker that crashed or that the server killed (timeout,
    // cancel): at most one per such death.
    std::uint64_t workers_restarted = 0;
    std::uint64_t workers_crashed = 0;  // died unasked (a signal, an exit, a failed start)
    std::uint64_t workers_killed = 0;   // killed by the server to end a task (timeout, cancel)
    // An image's first use by this process: found verified in the cache directory (hit) or
    // fetched from the master (miss); and the bytes fetched.
    std::uint64_t image_cache_hits = 0;
    std::uint64_t image_cache_misses = 0;
    std::uint64_t image_bytes_fetched = 0;
    struct PerImage {
      std::string program;              // the image's file name, as the client named it
      std::uint64_t tasks_run = 0;      // reported by a worker (a value or an exception)
      std::uint64_t tasks_crashed = 0;  // ended with their worker (crash, timeout)
    };
    std::map<std::string, PerImage> images;  // by SHA-256 (32 bytes)
  };
  const Counters& counters() const { return counters_; }

  unsigned busy() const;
  // Tasks given to this pool and not reported yet (waiting, queued in a worker or running).
  std::size_t unfinished() const;
  std::size_t worker_count() const { return workers_.size(); }

 private:
  struct Worker;
  struct Image {
    bool ready = false;
    bool fetching = false;
    std::string path;
    std::string partial;  // where the bytes received so far are
    std::uint64_t received = 0;
    // Its workers die as they load (exit 127: a shared library missing here): its tasks fail
    // with this message, without starting workers, until kStartRetryAfter has passed.
    std::string start_error;
    std::chrono::steady_clock::time_point start_failed_at;
    std::string start_error_library_set;  // the workers' Assignment.library_set
  };

  void pump();
  bool image_usable(const std::string& sha256, const std::string& name);
  std::shared_ptr<Worker> spawn(const std::string& sha256, const std::string& name,
                                const std::string& library_set);
  void start_task(const std::shared_ptr<Worker>& worker, wire::Assignment&& task);
  // The worker's front task has started: attribute output to it, arm its timeout.
  void front_started(const std::shared_ptr<Worker>& worker);
  void on_worker_message(const std::shared_ptr<Worker>& worker, wire::Envelope& message);
  void on_worker_gone(const std::shared_ptr<Worker>& worker);
  void reap(const std::shared_ptr<Worker>& worker, int attempts);
  enum class PipeState { kDrained, kMore, kClosed };
  void read_output(const std::shared_ptr<Worker>& worker, bool is_stderr);
  void continue_output(const std::shared_ptr<Worker>& worker, bool is_stderr);
  // Reads what the pipe holds now (at most max_reads chunks), forwarding it attributed to its
  // task.
  PipeState read_pipe(Worker& worker, bool is_stderr, int max_reads);
  void arm_deadline(const std::shared_ptr<Worker>& worker, std::uint64_t id, std::uint32_t timeout);
  void drain_output(Worker& worker);
  void fail_task(std::uint64_t task_id, std::uint32_t kind, const std::string& message,
                 int exit_code = 0, int signal = 0);
  void retire(const std::shared_ptr<Worker>& worker);
  // A worker died before it started (see Image::start_error): fails its image's tasks.
  void cannot_start(const std::shared_ptr<Worker>& worker);

  asio::io_context& io_;
  std::string server_id_;
  unsigned capacity_;
  std::string cache_dir_;
  Callbacks callbacks_;
  std::map<std::string, Image> images_;
  std::deque<wire::Assignment> waiting_;
  std::vector<std::shared_ptr<Worker>> workers_;
  std::unordered_set<std::uint64_t>
      cancelled_;  // reported cancelled, possibly still queued in a worker
  bool shutting_down_ = false;
  bool workers_block_sigterm_ = false;
  std::vector<std::string> worker_environment_;
  std::uint64_t environment_generation_ = 0;  // counts changes of worker_environment_
  Counters counters_;
  std::uint64_t replacements_owed_ = 0;  // workers that died unasked or were killed, not replaced
};

}  // namespace clupy::server
