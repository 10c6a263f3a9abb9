// A real worker process (posix_spawn of a program image): a socketpair as fd 3 for its
// RunTask/TaskDone frames, pipes for its stdout and stderr, its progress page as fd 4 and its
// call arena as fd 5 (worker/progress_page.hpp), the environment it is given. It forwards its
// output attributed to the task it runs, reaps itself when its link closes, and arms the
// timeout of its running task. Dispatch sees it as a WorkerProcess. Owned by the server's
// io_context thread; not thread-safe.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/connection.hpp"
#include "worker/call_ring.hpp"
#include "worker/dispatch.hpp"
#include "worker/progress_page.hpp"
#include "worker/worker_process.hpp"

namespace clupy::worker {

namespace asio = boost::asio;

struct SpawnOptions {
  std::string path;  // the program image
  std::string name;  // its argv[0]
  std::string server_id;
  // "NAME=value" entries added to the server's environment (without its CLUPY_WORKER_* and
  // CLUPY_STORE_*, and without its LD_LIBRARY_PATH when one is given here).
  std::vector<std::string> environment;
  // A job's shipped libraries (absolute; "": none): first on the worker's library path, before
  // the manifest's and the server's own.
  std::string library_directory;
  bool block_sigterm = false;  // see WorkerPool::set_workers_block_sigterm
};

class SpawnedWorker : public WorkerProcess, public std::enable_shared_from_this<SpawnedWorker> {
 public:
  // Called on the io_context thread, never after stop_now().
  struct Handlers {
    std::function<void(SpawnedWorker& worker, wire::Envelope& message)> on_message;
    std::function<void(SpawnedWorker& worker)> on_closing;  // its link closed: reaping begins
    std::function<void(SpawnedWorker& worker, const WorkerExit& exit)> on_exited;
    std::function<void(std::uint64_t task_id, bool is_stderr, std::string text)> on_output;
  };

  // Starts a worker; null when it cannot be started (logged).
  static std::shared_ptr<SpawnedWorker> spawn(asio::io_context& io, const SpawnOptions& options,
                                              Handlers handlers);
  ~SpawnedWorker() override;

  pid_t pid() const override { return pid_; }
  void send(const wire::Assignment& task) override;
  std::optional<std::uint64_t> running() const override;
  void kill() override;
  void retire() override;
  void stop_now() override;

  // The task whose output is read now when the worker keeps no progress page.
  void set_output_owner(std::uint64_t task_id) { output_owner_ = task_id; }
  // Calls `expired` after `timeout` unless disarmed, rearmed or stopped first.
  void arm_deadline(std::chrono::milliseconds timeout, std::function<void()> expired);
  void disarm_deadline() { deadline_.cancel(); }

  SpawnedWorker(asio::io_context& io, pid_t pid, Handlers handlers);  // for spawn()

 private:
  enum class PipeState { kDrained, kMore, kClosed };
  void start(int link_fd, int out_fd, int err_fd);
  void on_link_closed();
  void reap(int attempts);
  void read_output(bool is_stderr);
  void continue_output(bool is_stderr);
  // Reads what the pipe holds now (at most max_reads chunks), forwarding it attributed to its
  // task.
  PipeState read_pipe(bool is_stderr, int max_reads);
  void drain_output();
  void close_streams();

  asio::io_context& io_;
  pid_t pid_;
  Handlers handlers_;
  WorkerProgress* progress_ = nullptr;  // shared with the worker; null: none
  char* arena_ = nullptr;               // the call arena; null: none
  CallRing ring_;
  std::string out_buffer_, err_buffer_;  // before the streams: they must outlive pending reads
  std::shared_ptr<common::Connection> link_;
  std::unique_ptr<asio::posix::stream_descriptor> out_, err_;
  asio::steady_timer deadline_;
  std::uint64_t output_owner_ = 0;  // without a progress page: the task whose output is read
  bool drained_this_turn_ = false;  // output read once per batch of results
  bool closing_ = false;            // its link closed
  bool reaped_ = false;
  bool stopped_ = false;      // stop_now(): no handler is called any more
  bool reported_ = false;     // it has sent a result
  std::string early_stderr_;  // what it wrote to stderr before its first result (capped)
};

}  // namespace clupy::worker
