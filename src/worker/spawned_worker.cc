#include "worker/spawned_worker.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <cstring>

#include "common/log.hpp"

extern char** environ;

namespace clupy::worker {

namespace {
auto log() { return common::logger("server"); }

// Reads of 16 KiB from one pipe per turn of the event loop: a task that prints without pause
// must not starve the other workers' results.
constexpr int kReadsPerTurn = 8;
// The stderr of a worker that has not started yet, kept to say why it could not.
constexpr std::size_t kStartErrorBytes = 2048;
// The call arena of each worker: sparse, so only the pages calls have used are resident. Room
// for the pipeline's calls of 1 MiB (32) twice over.
constexpr std::size_t kCallArenaSize = 64u << 20;

// A fresh progress page (worker/progress_page.hpp) as a memfd, mapped here; -1 on failure
// (the worker then runs without batching).
int make_progress_page(WorkerProgress*& mapped) {
  const int created = ::memfd_create("clupy-worker-progress", MFD_CLOEXEC);
  if (created < 0) return -1;
  // Above the worker's fds 0-4: posix_spawn's dup2s onto 3 and 4 must not clobber it first.
  const int fd = ::fcntl(created, F_DUPFD_CLOEXEC, 10);
  ::close(created);
  if (fd < 0) return -1;
  void* page = MAP_FAILED;
  if (::ftruncate(fd, static_cast<off_t>(kWorkerProgressSize)) == 0)
    page = ::mmap(nullptr, kWorkerProgressSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (page == MAP_FAILED) {
    ::close(fd);
    return -1;
  }
  mapped = static_cast<WorkerProgress*>(page);
  mapped->running_task.store(0);
  mapped->magic.store(kWorkerProgressMagic);
  mapped->server_features.store(kLinkAttachments);
  return fd;
}

// A fresh call arena as a memfd, mapped here; -1 on failure (calls then travel on the socket).
int make_call_arena(char*& mapped) {
  const int created = ::memfd_create("clupy-worker-calls", MFD_CLOEXEC);
  if (created < 0) return -1;
  const int fd = ::fcntl(created, F_DUPFD_CLOEXEC, 10);  // as for the progress page
  ::close(created);
  if (fd < 0) return -1;
  void* arena = MAP_FAILED;
  if (::ftruncate(fd, static_cast<off_t>(kCallArenaSize)) == 0)
    arena = ::mmap(nullptr, kCallArenaSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (arena == MAP_FAILED) {
    ::close(fd);
    return -1;
  }
  mapped = static_cast<char*>(arena);
  return fd;
}

// The worker's environment: the server's, without what the options set, plus the options'.
std::vector<std::string> worker_environment(const SpawnOptions& options) {
  std::vector<std::string> env;
  // The server's own CLUPY_WORKER_*/CLUPY_STORE_* would shadow what it sets below, and so would
  // its LD_LIBRARY_PATH the one it gives (which includes it).
  const bool sets_library_path =
      std::any_of(options.environment.begin(), options.environment.end(),
                  [](const std::string& e) { return e.starts_with("LD_LIBRARY_PATH="); });
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, "CLUPY_WORKER_", 13) != 0 && std::strncmp(*e, "CLUPY_STORE_", 12) != 0 &&
        !(sets_library_path && std::strncmp(*e, "LD_LIBRARY_PATH=", 16) == 0))
      env.emplace_back(*e);
  for (const auto& entry : options.environment) env.push_back(entry);
  if (!options.library_directory.empty()) {
    auto search = std::find_if(env.begin(), env.end(), [](const std::string& e) {
      return e.starts_with("LD_LIBRARY_PATH=");
    });
    if (search == env.end())
      env.push_back("LD_LIBRARY_PATH=" + options.library_directory);
    else
      search->insert(16, options.library_directory + ":");
  }
  env.push_back("CLUPY_WORKER_FD=3");
  env.push_back("CLUPY_WORKER_SERVER=" + options.server_id);
  return env;
}
}  // namespace

SpawnedWorker::SpawnedWorker(asio::io_context& io, pid_t pid, Handlers handlers)
    : io_(io), pid_(pid), handlers_(std::move(handlers)), ring_(kCallArenaSize), deadline_(io) {}

SpawnedWorker::~SpawnedWorker() {
  if (progress_) ::munmap(progress_, kWorkerProgressSize);
  if (arena_) ::munmap(arena_, kCallArenaSize);
}

std::shared_ptr<SpawnedWorker> SpawnedWorker::spawn(asio::io_context& io,
                                                    const SpawnOptions& options,
                                                    Handlers handlers) {
  int link[2], out[2], err[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, link) != 0) return nullptr;
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(link[0]);
    ::close(link[1]);
    return nullptr;
  }
  if (::pipe2(err, O_CLOEXEC) != 0) {
    for (int fd : {link[0], link[1], out[0], out[1]}) ::close(fd);
    return nullptr;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawn_file_actions_adddup2(&actions, link[1], 3);
  WorkerProgress* progress = nullptr;
  const int progress_fd = make_progress_page(progress);
  if (progress_fd >= 0) posix_spawn_file_actions_adddup2(&actions, progress_fd, kWorkerProgressFd);
  char* arena = nullptr;
  const int arena_fd = progress ? make_call_arena(arena) : -1;
  if (arena_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, arena_fd, kWorkerArenaFd);
    progress->call_arena_size.store(kCallArenaSize);
    progress->server_features.fetch_or(kLinkCallArena);
  }
  // Whatever else this process holds (its connection to the master, other workers' pipes, a
  // library's socket opened without close-on-exec) stays here: a worker holding the master's
  // connection would keep a killed server looking alive.
  posix_spawn_file_actions_addclosefrom_np(&actions, kWorkerArenaFd + 1);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // The worker must not inherit a blocked or ignored signal mask from an embedding program.
  sigset_t none;
  sigemptyset(&none);
  if (options.block_sigterm) sigaddset(&none, SIGTERM);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);

  std::vector<std::string> env_storage = worker_environment(options);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string argv0 = options.name.empty() ? "clupy-worker" : options.name;
  char* argv[] = {argv0.data(), nullptr};

  pid_t pid = -1;
  const int rc =
      ::posix_spawn(&pid, options.path.c_str(), &actions, &attributes, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(link[1]);
  ::close(out[1]);
  ::close(err[1]);
  if (progress_fd >= 0) ::close(progress_fd);
  if (arena_fd >= 0) ::close(arena_fd);
  if (rc != 0) {
    if (progress) ::munmap(progress, kWorkerProgressSize);
    if (arena) ::munmap(arena, kCallArenaSize);
    for (int fd : {link[0], out[0], err[0]}) ::close(fd);
    log()->error("cannot start a worker from {}: {}", options.path, std::strerror(rc));
    return nullptr;
  }
  auto worker = std::make_shared<SpawnedWorker>(io, pid, std::move(handlers));
  worker->progress_ = progress;
  worker->arena_ = arena;
  worker->start(link[0], out[0], err[0]);
  return worker;
}

void SpawnedWorker::start(int link_fd, int out_fd, int err_fd) {
  common::local_socket socket(io_);
  socket.assign(asio::local::stream_protocol(), link_fd);
  link_ = std::make_shared<common::Connection>(common::Transport(std::move(socket)),
                                               common::kDefaultMaxFrameSize);
  for (int fd : {out_fd, err_fd}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  out_ = std::make_unique<asio::posix::stream_descriptor>(io_, out_fd);
  err_ = std::make_unique<asio::posix::stream_descriptor>(io_, err_fd);
  std::weak_ptr<SpawnedWorker> weak = weak_from_this();
  link_->start(
      [weak](wire::Envelope& message) {
        auto w = weak.lock();
        if (!w || w->stopped_) return;
        w->reported_ = true;
        if (message.has_task_done()) {
          w->ring_.release(message.task_done().task_id());
          if (!w->drained_this_turn_) {
            // Output the worker wrote before this batch of results is forwarded before them.
            // One poll() per batch: the rest of the batch arrived in the same read.
            w->drain_output();
            w->drained_this_turn_ = true;
            asio::post(w->io_, [weak] {
              if (auto again = weak.lock()) again->drained_this_turn_ = false;
            });
          }
        }
        w->handlers_.on_message(*w, message);
      },
      [weak](const std::string&) {
        if (auto w = weak.lock()) w->on_link_closed();
      });
  read_output(false);
  read_output(true);
}

void SpawnedWorker::send(const wire::Assignment& task) {
  wire::Envelope run;
  run.mutable_run_task()->set_task_id(task.task_id());
  run.mutable_run_task()->set_master_fencing_token(task.master_fencing_token());
  const std::uint32_t features =
      progress_ ? progress_->worker_features.load(std::memory_order_acquire) : 0;
  // The call is copied, not moved: the assignment is kept to rerun the task elsewhere should
  // this worker die before reporting it. A large one is copied into the worker's call arena
  // when it has room (the worker reads it there), else onto the socket.
  std::optional<std::size_t> placed;
  if (arena_ && task.call().size() >= common::kAttachmentThreshold &&
      (features & kLinkCallArena) != 0)
    placed = ring_.place(task.task_id(), task.call().size());
  if (placed) {
    std::memcpy(arena_ + *placed, task.call().data(), task.call().size());
    run.mutable_run_task()->set_arena_offset(*placed);
    run.mutable_run_task()->set_arena_size(task.call().size());
  } else {
    run.mutable_run_task()->set_call(task.call());
  }
  if (!link_->attachments_enabled() && (features & kLinkAttachments) != 0)
    link_->enable_attachments();
  link_->send(std::move(run));
}

std::optional<std::uint64_t> SpawnedWorker::running() const {
  if (!progress_) return std::nullopt;
  const std::uint64_t id = progress_->running_task.load(std::memory_order_acquire);
  if (id == 0) return std::nullopt;
  return id;
}

void SpawnedWorker::kill() {
  if (!reaped_) ::kill(pid_, SIGKILL);
}

void SpawnedWorker::retire() {
  kill();
  link_->close("retired");
}

void SpawnedWorker::stop_now() {
  stopped_ = true;
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    reaped_ = true;
  }
  deadline_.cancel();
  link_->close("server stopping");
  close_streams();
}

void SpawnedWorker::arm_deadline(std::chrono::milliseconds timeout, std::function<void()> expired) {
  deadline_.expires_after(timeout);
  std::weak_ptr<SpawnedWorker> weak = weak_from_this();
  // An expiry already queued when the worker is stopped must not reach its owner, which may be
  // gone (the server stopping).
  deadline_.async_wait([weak, expired = std::move(expired)](boost::system::error_code ec) {
    auto w = weak.lock();
    if (!ec && w && !w->stopped_) expired();
  });
}

void SpawnedWorker::on_link_closed() {
  if (closing_ || stopped_) return;
  closing_ = true;
  handlers_.on_closing(*this);
  reap(0);
}

void SpawnedWorker::reap(int attempts) {
  if (stopped_) return;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) {
    // The link closed but the process lingers: give it a moment, then make sure.
    if (attempts == 100) ::kill(pid_, SIGKILL);
    auto timer = std::make_shared<asio::steady_timer>(
        io_, std::chrono::milliseconds(attempts < 20 ? 1 : 20));
    timer->async_wait([self = shared_from_this(), attempts, timer](boost::system::error_code) {
      self->reap(attempts + 1);
    });
    return;
  }
  reaped_ = true;
  drain_output();
  deadline_.cancel();
  close_streams();
  WorkerExit exit;
  exit.known = r > 0;
  exit.signaled = exit.known && WIFSIGNALED(status);
  if (exit.signaled) exit.signal = WTERMSIG(status);
  if (exit.known && WIFEXITED(status)) exit.exit_code = WEXITSTATUS(status);
  // It loaded if it reported anything or announced itself on its progress page.
  exit.attached =
      reported_ || (progress_ && progress_->worker_features.load(std::memory_order_acquire));
  exit.early_stderr = early_stderr_;
  auto self = shared_from_this();  // the handler may drop the last other owner
  handlers_.on_exited(*this, exit);
}

void SpawnedWorker::close_streams() {
  boost::system::error_code ignored;
  if (out_) out_->close(ignored);
  if (err_) err_->close(ignored);
}

void SpawnedWorker::read_output(bool is_stderr) {
  auto& stream = is_stderr ? err_ : out_;
  std::weak_ptr<SpawnedWorker> weak = weak_from_this();
  // Wait, then read by hand: the owner must be looked up before the bytes are taken from the
  // pipe (see read_pipe).
  stream->async_wait(asio::posix::stream_descriptor::wait_read,
                     [weak, is_stderr](boost::system::error_code ec) {
                       auto w = weak.lock();
                       if (!w || ec || w->stopped_) return;
                       w->continue_output(is_stderr);
                     });
}

void SpawnedWorker::continue_output(bool is_stderr) {
  switch (read_pipe(is_stderr, kReadsPerTurn)) {
    case PipeState::kDrained:
      read_output(is_stderr);  // the next bytes are a new edge for the reactor
      break;
    case PipeState::kMore: {
      // A chatty task: let the other events of this turn run, then read on.
      std::weak_ptr<SpawnedWorker> weak = weak_from_this();
      asio::post(io_, [weak, is_stderr] {
        if (auto w = weak.lock(); w && !w->stopped_) w->continue_output(is_stderr);
      });
      break;
    }
    case PipeState::kClosed:
      break;
  }
}

SpawnedWorker::PipeState SpawnedWorker::read_pipe(bool is_stderr, int max_reads) {
  auto& stream = is_stderr ? err_ : out_;
  if (!stream || !stream->is_open()) return PipeState::kClosed;
  std::string& chunk = is_stderr ? err_buffer_ : out_buffer_;
  chunk.resize(16384);
  for (int reads = 0; reads < max_reads; ++reads) {
    // Whose bytes these are: with a progress page, the task it names now. The worker does not
    // name its next task while its pipes hold unread output of the current one, so bytes
    // read after this look-up were written by this task (or a later one is not running yet).
    const std::uint64_t owner = running().value_or(output_owner_);
    const ssize_t n = ::read(stream->native_handle(), chunk.data(), chunk.size());  // non-blocking
    if (n == 0) return PipeState::kClosed;  // the worker closed it: it is gone
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? PipeState::kDrained : PipeState::kClosed;
    }
    if (is_stderr && !reported_ && early_stderr_.size() < kStartErrorBytes)
      early_stderr_.append(chunk.data(),
                           std::min<std::size_t>(static_cast<std::size_t>(n), kStartErrorBytes));
    if (handlers_.on_output)
      handlers_.on_output(owner, is_stderr, chunk.substr(0, static_cast<std::size_t>(n)));
  }
  return PipeState::kMore;
}

void SpawnedWorker::drain_output() {
  // What the worker wrote before it reported belongs to the tasks it reported; read it now,
  // before the results leave. One poll() tells whether there is anything at all, so a quiet
  // batch costs one system call here.
  pollfd fds[2] = {{out_ && out_->is_open() ? out_->native_handle() : -1, POLLIN, 0},
                   {err_ && err_->is_open() ? err_->native_handle() : -1, POLLIN, 0}};
  if (::poll(fds, 2, 0) <= 0) return;
  // Up to 1 MiB: the bytes of the reported tasks leave before their results (the worker waits
  // for them to be read before it names its next task, so a task printing without pause now
  // is a later one, left to read_output).
  for (int i = 0; i < 2; ++i)
    if (fds[i].revents & POLLIN) read_pipe(i == 1, 8 * kReadsPerTurn);
}

}  // namespace clupy::worker
