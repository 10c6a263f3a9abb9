#include "server/workers.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>

#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "clupy/errors.hpp"
#include "common/auth.hpp"
#include "common/log.hpp"
#include "worker/progress_page.hpp"

extern char** environ;

namespace clupy::server {

namespace fs = std::filesystem;

namespace {
auto log() { return common::logger("server"); }

// Tasks sent ahead to one worker, at most. More hides more round trips and lets the worker
// answer a whole batch with one write; fewer keeps a crash from delaying more innocent tasks
// (they are rerun on another worker, not failed).
constexpr std::size_t kPipelineDepth = 32;
// Work queued behind a worker's running task, at most, by its measured time per task. Tasks
// sent to a worker cannot move to another, so long tasks queued behind one worker while
// another runs out of work would leave a slot idle at the end of a job; queueing only about
// this much keeps each worker busy without that.
constexpr auto kQueuedWork = std::chrono::milliseconds(2);
// A worker's time per task is measured over windows of this many results or this much busy
// time, whichever comes first.
constexpr std::uint32_t kRateWindowTasks = 64;
constexpr auto kRateWindow = std::chrono::milliseconds(100);
// How soon to look again when a task's deadline passes while the progress page says it is no
// longer running (its result is on the way).
constexpr auto kResultGrace = std::chrono::milliseconds(5);
// Reads of 16 KiB from one pipe per turn of the event loop: a task that prints without pause
// must not starve the other workers' results.
constexpr int kReadsPerTurn = 8;
// A program whose workers cannot start here (a shared library it links is missing) is tried
// again after this long: the library may have been installed meanwhile.
constexpr auto kStartRetryAfter = std::chrono::seconds(30);
// The stderr of a worker that has not started yet, kept to say why it could not.
constexpr std::size_t kStartErrorBytes = 2048;

// A fresh progress page (worker/progress_page.hpp) as a memfd, mapped here; -1 on failure
// (the worker then runs without batching).
int make_progress_page(worker::WorkerProgress*& mapped) {
  const int created = ::memfd_create("clupy-worker-progress", MFD_CLOEXEC);
  if (created < 0) return -1;
  // Above the worker's fds 0-4: posix_spawn's dup2s onto 3 and 4 must not clobber it first.
  const int fd = ::fcntl(created, F_DUPFD_CLOEXEC, 10);
  ::close(created);
  if (fd < 0) return -1;
  void* page = MAP_FAILED;
  if (::ftruncate(fd, static_cast<off_t>(worker::kWorkerProgressSize)) == 0)
    page = ::mmap(nullptr, worker::kWorkerProgressSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (page == MAP_FAILED) {
    ::close(fd);
    return -1;
  }
  mapped = static_cast<worker::WorkerProgress*>(page);
  mapped->running_task.store(0);
  mapped->magic.store(worker::kWorkerProgressMagic);
  mapped->server_features.store(worker::kLinkAttachments);
  return fd;
}

// The call arena of each worker (worker/progress_page.hpp): sparse, so only the pages calls
// have used are resident. Room for the pipeline's calls of 1 MiB (32) twice over.
constexpr std::size_t kCallArenaSize = 64u << 20;

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

std::string signal_name(int signo) {
  const char* abbrev = sigabbrev_np(signo);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(signo);
}
}  // namespace

struct WorkerPool::Worker {
  ~Worker() {
    if (progress) ::munmap(progress, worker::kWorkerProgressSize);
    if (arena) ::munmap(arena, kCallArenaSize);
  }
  // Room for a call of `size` bytes in the arena, as a ring: calls are released in the order
  // they were placed, when their tasks are reported. Null when there is no room now.
  std::optional<std::size_t> place_call(std::uint64_t task_id, std::size_t size) {
    if (!arena || size > kCallArenaSize) return std::nullopt;
    std::uint64_t start = arena_head;
    const std::size_t at = start % kCallArenaSize;
    if (at + size > kCallArenaSize) start += kCallArenaSize - at;  // no call wraps around
    if (start + size - arena_tail > kCallArenaSize) return std::nullopt;
    arena_head = start + size;
    arena_calls.emplace_back(task_id, arena_head);
    return start % kCallArenaSize;
  }
  // The worker has reported `task_id`: its call's room (if it had one) is free again.
  void release_call(std::uint64_t task_id) {
    if (arena_calls.empty() || arena_calls.front().first != task_id) return;
    arena_tail = arena_calls.front().second;
    arena_calls.pop_front();
    // Empty: start again at the front, so a worker that holds few calls at a time keeps only
    // the arena's first pages resident.
    if (arena_calls.empty()) arena_head = arena_tail = 0;
  }
  // The task the worker says it is running; none when it keeps no progress page (a worker of an
  // older libclupy, or one that could not map it) or has not started a task yet.
  std::optional<std::uint64_t> running() const {
    if (!progress) return std::nullopt;
    const std::uint64_t id = progress->running_task.load(std::memory_order_acquire);
    if (id == 0) return std::nullopt;
    return id;
  }
  // The same, only if that task is still unreported here. Otherwise the worker is between
  // tasks, about to start the first unreported one.
  std::optional<std::uint64_t> running_unreported() const {
    const auto id = running();
    if (id && std::any_of(queue.begin(), queue.end(),
                          [&](const wire::Assignment& a) { return a.task_id() == *id; }))
      return id;
    return std::nullopt;
  }

  pid_t pid = -1;
  worker::WorkerProgress* progress = nullptr;    // shared with the worker; null: none
  char* arena = nullptr;                         // the call arena; null: none
  std::uint64_t arena_head = 0, arena_tail = 0;  // ring positions, counted from its start
  std::deque<std::pair<std::uint64_t, std::uint64_t>> arena_calls;  // task, end of its call
  std::string image;
  std::string library_set;  // the job's shipped libraries (Assignment.library_set); "": none
  std::string out_buffer, err_buffer;  // before the streams: they must outlive pending reads
  std::shared_ptr<common::Connection> link;
  std::unique_ptr<asio::posix::stream_descriptor> out, err;
  // Tasks sent to this worker and not reported yet, in order. The worker runs them in order
  // and reports them in batches: the front one is running, or done with its result on the
  // way; the progress page says which one runs.
  std::deque<wire::Assignment> queue;
  std::uint64_t output_owner = 0;  // without a progress page: the task whose output is read
  bool drained_this_turn = false;  // output read once per batch of results
  std::unique_ptr<asio::steady_timer> deadline;
  // Set when the server itself ends a task (timeout, cancel): reported for verdict_task
  // instead of a crash.
  std::optional<wire::TaskFailure> verdict;
  std::uint64_t verdict_task = 0;
  bool abandoned = false;  // the task's result must not be reported
  bool gone = false;
  // Killed to make room for another program: takes no task while its death is on its way.
  bool retired = false;
  std::uint64_t environment_generation = 0;  // the pool's when it was started
  bool reported = false;                     // it has sent a result
  std::string early_stderr;  // what it wrote to stderr before its first result (capped)

  // Tasks this worker may hold: see kQueuedWork.
  std::size_t pipeline_limit() const {
    // Not measured yet: one queued task, until the first result tells how long tasks take.
    if (seconds_per_task <= 0) return 2;
    const double queued = std::chrono::duration<double>(kQueuedWork).count() / seconds_per_task;
    return 1 + static_cast<std::size_t>(std::min<double>(queued, kPipelineDepth - 1));
  }
  // A result arrived: updates seconds_per_task from the time the worker spent busy (from each
  // task becoming the front one to its result; idle time does not count), over windows of
  // kRateWindowTasks results or kRateWindow of busy time.
  void count_result(std::chrono::steady_clock::time_point now) {
    busy_in_window += now - front_since;
    ++results_in_window;
    if (seconds_per_task > 0 && results_in_window < kRateWindowTasks &&
        busy_in_window < kRateWindow)
      return;
    // Results of one batch arrive together: a first sample of 0 means fast tasks.
    seconds_per_task =
        std::max(std::chrono::duration<double>(busy_in_window).count() / results_in_window, 1e-9);
    busy_in_window = {};
    results_in_window = 0;
  }
  // When the front task started: set by WorkerPool::front_started.
  std::chrono::steady_clock::time_point front_since{};
  std::chrono::steady_clock::duration busy_in_window{};
  std::uint32_t results_in_window = 0;
  double seconds_per_task = 0;  // 0: not measured yet
};

WorkerPool::WorkerPool(asio::io_context& io, std::string server_id, unsigned capacity,
                       std::string cache_dir, Callbacks callbacks)
    : io_(io),
      server_id_(std::move(server_id)),
      capacity_(std::max(1u, capacity)),
      cache_dir_(std::move(cache_dir)),
      callbacks_(std::move(callbacks)) {
  fs::create_directories(cache_dir_ + "/images");
}

WorkerPool::~WorkerPool() { shutdown(); }

unsigned WorkerPool::busy() const {
  return static_cast<unsigned>(std::count_if(workers_.begin(), workers_.end(),
                                             [](const auto& w) { return !w->queue.empty(); }));
}

std::size_t WorkerPool::unfinished() const {
  std::size_t count = waiting_.size();
  for (const auto& w : workers_) count += w->queue.size();
  return count;
}

void WorkerPool::run(wire::Assignment&& task) {
  const std::string sha = task.image_sha256();
  if (sha.size() != 32) {
    fail_task(task.task_id(), static_cast<std::uint32_t>(FailureKind::kProtocol),
              "assignment without an image digest");
    return;
  }
  Image& image = images_[sha];
  if (image.path.empty()) {
    image.path = cache_dir_ + "/images/" + base::to_hex(sha);
    // Servers on one machine may share a cache: each downloads into a file of its own and
    // renames it into place, which is atomic.
    image.partial = image.path + ".part-" + std::to_string(::getpid());
  }
  waiting_.push_back(std::move(task));
  if (!image.ready && !image.fetching) {
    counters_.images[sha].program = waiting_.back().image_name();
    if (image_usable(sha, waiting_.back().image_name())) ++counters_.image_cache_hits;
  }
  if (!image.ready && !image.fetching) {
    ++counters_.image_cache_misses;
    image.fetching = true;
    image.received = 0;
    std::error_code ignored;
    fs::remove(image.partial, ignored);
    log()->info("fetching program image {} from the master", base::to_hex(sha).substr(0, 16));
    callbacks_.fetch_image(sha);
  }
  pump();
}

bool WorkerPool::image_usable(const std::string& sha256, const std::string&) {
  Image& image = images_[sha256];
  if (!fs::exists(image.path)) return false;
  // A cached file is trusted only after its bytes are checked once by this process.
  auto digest = base::sha256_file(image.path);
  if (!digest || *digest != sha256) {
    log()->warn("cached image {} is corrupt; fetching it again", image.path);
    std::error_code ignored;
    fs::remove(image.path, ignored);
    return false;
  }
  image.ready = true;
  return true;
}

void WorkerPool::image_chunk(const wire::ImageChunk& chunk) {
  auto it = images_.find(chunk.image_sha256());
  if (it == images_.end() || !it->second.fetching) return;
  Image& image = it->second;
  if (chunk.offset() != image.received) {
    image_failed(chunk.image_sha256(), "image chunks arrived out of order");
    return;
  }
  {
    std::ofstream part(image.partial, std::ios::binary | std::ios::app);
    part.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    if (!part) {
      image_failed(chunk.image_sha256(), "cannot write " + image.path + ".part (disk full?)");
      return;
    }
  }
  image.received += chunk.data().size();
  counters_.image_bytes_fetched += chunk.data().size();
  if (!chunk.last()) return;
  auto digest = base::sha256_file(image.partial);
  if (!digest || *digest != chunk.image_sha256()) {
    image_failed(chunk.image_sha256(), "the fetched image does not match its SHA-256");
    return;
  }
  ::chmod((image.partial).c_str(), 0755);
  fs::rename(image.partial, image.path);
  image.fetching = false;
  image.ready = true;
  log()->info("program image {} cached ({} bytes)",
              base::to_hex(chunk.image_sha256()).substr(0, 16), image.received);
  pump();
}

void WorkerPool::image_failed(const std::string& image_sha256, const std::string& reason) {
  auto it = images_.find(image_sha256);
  if (it != images_.end()) {
    it->second.fetching = false;
    std::error_code ignored;
    fs::remove(it->second.partial, ignored);
  }
  log()->error("cannot get program image {}: {}", base::to_hex(image_sha256).substr(0, 16), reason);
  for (auto task = waiting_.begin(); task != waiting_.end();) {
    if (task->image_sha256() == image_sha256) {
      fail_task(task->task_id(), static_cast<std::uint32_t>(FailureKind::kUnavailable),
                "server " + server_id_ + " could not get the program image: " + reason);
      task = waiting_.erase(task);
    } else {
      ++task;
    }
  }
}

void WorkerPool::pump() {
  if (shutting_down_) return;
  // Nothing can move while every slot holds a worker with a full pipeline (none is idle, so
  // none gives way either). Checked per task: the scheduler may keep a few hundred tasks
  // waiting here, and pump runs for every batch of results.
  auto room = [this] {
    if (workers_.size() < capacity_) return true;
    return std::any_of(workers_.begin(), workers_.end(), [](const auto& w) {
      return !w->gone && !w->retired && w->queue.size() < w->pipeline_limit();
    });
  };
  for (auto task = waiting_.begin(); task != waiting_.end() && room();) {
    Image& image = images_[task->image_sha256()];
    if (!image.ready) {
      ++task;
      continue;
    }
    // A start error holds for workers with the same shipped libraries only: another set (a job
    // shipping what was missing) may well start.
    if (!image.start_error.empty() && image.start_error_library_set == task->library_set()) {
      if (std::chrono::steady_clock::now() - image.start_failed_at < kStartRetryAfter) {
        fail_task(task->task_id(), static_cast<std::uint32_t>(FailureKind::kCrash),
                  image.start_error, 127);
        task = waiting_.erase(task);
        continue;
      }
      image.start_error.clear();
    }
    // The least loaded worker of this program; a new worker rather than queueing behind a busy
    // one while slots are free.
    std::shared_ptr<Worker> chosen;
    for (auto& w : workers_)
      if (!w->gone && !w->retired && w->image == task->image_sha256() &&
          w->library_set == task->library_set() && w->queue.size() < w->pipeline_limit() &&
          w->environment_generation == environment_generation_ &&
          (!chosen || w->queue.size() < chosen->queue.size()))
        chosen = w;
    if ((!chosen || !chosen->queue.empty()) && workers_.size() < capacity_) {
      if (auto fresh = spawn(task->image_sha256(), task->image_name(), task->library_set()))
        chosen = fresh;
    }
    if (!chosen && workers_.size() >= capacity_) {
      // Make room: an idle worker of another program gives way (pump runs again once it is gone).
      for (auto& w : workers_)
        if (w->queue.empty() && !w->gone && !w->retired &&
            (w->image != task->image_sha256() || w->library_set != task->library_set() ||
             w->environment_generation != environment_generation_)) {
          retire(w);
          break;
        }
    }
    if (!chosen) {
      ++task;
      continue;
    }
    start_task(chosen, std::move(*task));
    task = waiting_.erase(task);
  }
}

std::shared_ptr<WorkerPool::Worker> WorkerPool::spawn(const std::string& sha256,
                                                      const std::string& name,
                                                      const std::string& library_set) {
  const std::string& path = images_[sha256].path;
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
  worker::WorkerProgress* progress = nullptr;
  const int progress_fd = make_progress_page(progress);
  if (progress_fd >= 0)
    posix_spawn_file_actions_adddup2(&actions, progress_fd, worker::kWorkerProgressFd);
  char* arena = nullptr;
  const int arena_fd = progress ? make_call_arena(arena) : -1;
  if (arena_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, arena_fd, worker::kWorkerArenaFd);
    progress->call_arena_size.store(kCallArenaSize);
    progress->server_features.fetch_or(worker::kLinkCallArena);
  }
  // Whatever else this process holds (its connection to the master, other workers' pipes, a
  // library's socket opened without close-on-exec) stays here: a worker holding the master's
  // connection would keep a killed server looking alive.
  posix_spawn_file_actions_addclosefrom_np(&actions, worker::kWorkerArenaFd + 1);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // The worker must not inherit a blocked or ignored signal mask from an embedding program.
  sigset_t none;
  sigemptyset(&none);
  if (workers_block_sigterm_) sigaddset(&none, SIGTERM);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);

  std::vector<std::string> env_storage;
  // The server's own CLUPY_WORKER_*/CLUPY_STORE_* would shadow what it sets below, and so would
  // its LD_LIBRARY_PATH the one it gives (which includes it).
  const bool sets_library_path =
      std::any_of(worker_environment_.begin(), worker_environment_.end(),
                  [](const std::string& e) { return e.starts_with("LD_LIBRARY_PATH="); });
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, "CLUPY_WORKER_", 13) != 0 && std::strncmp(*e, "CLUPY_STORE_", 12) != 0 &&
        !(sets_library_path && std::strncmp(*e, "LD_LIBRARY_PATH=", 16) == 0))
      env_storage.emplace_back(*e);
  for (const auto& entry : worker_environment_) env_storage.push_back(entry);
  if (!library_set.empty() && callbacks_.library_directory) {
    // The job's shipped libraries come first, before the manifest's and the server's own.
    const std::string folder = callbacks_.library_directory(library_set);
    auto search = std::find_if(env_storage.begin(), env_storage.end(), [](const std::string& e) {
      return e.starts_with("LD_LIBRARY_PATH=");
    });
    if (search == env_storage.end())
      env_storage.push_back("LD_LIBRARY_PATH=" + folder);
    else
      search->insert(16, folder + ":");
  }
  env_storage.push_back("CLUPY_WORKER_FD=3");
  env_storage.push_back("CLUPY_WORKER_SERVER=" + server_id_);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string argv0 = name.empty() ? "clupy-worker" : name;
  char* argv[] = {argv0.data(), nullptr};

  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, path.c_str(), &actions, &attributes, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(link[1]);
  ::close(out[1]);
  ::close(err[1]);
  if (progress_fd >= 0) ::close(progress_fd);
  if (arena_fd >= 0) ::close(arena_fd);
  if (rc != 0) {
    if (progress) ::munmap(progress, worker::kWorkerProgressSize);
    if (arena) ::munmap(arena, kCallArenaSize);
    for (int fd : {link[0], out[0], err[0]}) ::close(fd);
    log()->error("cannot start a worker from {}: {}", path, std::strerror(rc));
    return nullptr;
  }
  auto worker = std::make_shared<Worker>();
  worker->environment_generation = environment_generation_;
  worker->pid = pid;
  worker->progress = progress;
  worker->arena = arena;
  worker->image = sha256;
  worker->library_set = library_set;
  common::local_socket socket(io_);
  socket.assign(asio::local::stream_protocol(), link[0]);
  worker->link = std::make_shared<common::Connection>(common::Transport(std::move(socket)),
                                                      common::kDefaultMaxFrameSize);
  for (int fd : {out[0], err[0]}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  worker->out = std::make_unique<asio::posix::stream_descriptor>(io_, out[0]);
  worker->err = std::make_unique<asio::posix::stream_descriptor>(io_, err[0]);
  std::weak_ptr<Worker> weak = worker;
  worker->link->start(
      [this, weak](wire::Envelope& message) {
        if (auto w = weak.lock()) on_worker_message(w, message);
      },
      [this, weak](const std::string&) {
        if (auto w = weak.lock()) on_worker_gone(w);
      });
  read_output(worker, false);
  read_output(worker, true);
  workers_.push_back(worker);
  ++counters_.workers_started;
  if (replacements_owed_ > 0) {
    --replacements_owed_;
    ++counters_.workers_restarted;
  }
  log()->debug("started worker {} for image {}", pid, base::to_hex(sha256).substr(0, 16));
  return worker;
}

void WorkerPool::start_task(const std::shared_ptr<Worker>& worker, wire::Assignment&& task) {
  wire::Envelope run;
  run.mutable_run_task()->set_task_id(task.task_id());
  const std::uint32_t features =
      worker->progress ? worker->progress->worker_features.load(std::memory_order_acquire) : 0;
  // The call is copied, not moved: the assignment is kept to rerun the task elsewhere should
  // this worker die before reporting it. A large one is copied into the worker's call arena
  // when it has room (the worker reads it there), else onto the socket.
  std::optional<std::size_t> placed;
  if (task.call().size() >= common::kAttachmentThreshold &&
      (features & worker::kLinkCallArena) != 0)
    placed = worker->place_call(task.task_id(), task.call().size());
  if (placed) {
    std::memcpy(worker->arena + *placed, task.call().data(), task.call().size());
    run.mutable_run_task()->set_arena_offset(*placed);
    run.mutable_run_task()->set_arena_size(task.call().size());
  } else {
    run.mutable_run_task()->set_call(task.call());
  }
  if (!worker->link->attachments_enabled() && (features & worker::kLinkAttachments) != 0)
    worker->link->enable_attachments();
  worker->link->send(std::move(run));
  worker->queue.push_back(std::move(task));
  if (worker->queue.size() == 1) front_started(worker);
}

void WorkerPool::front_started(const std::shared_ptr<Worker>& worker) {
  const wire::Assignment& task = worker->queue.front();
  worker->front_since = std::chrono::steady_clock::now();  // its busy time, for the pipeline
  worker->output_owner = task.task_id();
  worker->deadline.reset();
  if (task.timeout_ms() == 0) return;
  // The worker runs its tasks in order, so the front one starts when the previous one ends.
  worker->deadline =
      std::make_unique<asio::steady_timer>(io_, std::chrono::milliseconds(task.timeout_ms()));
  arm_deadline(worker, task.task_id(), task.timeout_ms());
}

void WorkerPool::arm_deadline(const std::shared_ptr<Worker>& worker, std::uint64_t id,
                              std::uint32_t timeout) {
  std::weak_ptr<Worker> weak = worker;
  worker->deadline->async_wait([this, weak, id, timeout](boost::system::error_code ec) {
    auto w = weak.lock();
    if (ec || !w || w->queue.empty() || w->queue.front().task_id() != id) return;
    if (auto running = w->running_unreported(); running && *running != id) {
      // Done, its result held or on the way in the worker's batch: look again shortly.
      w->deadline->expires_after(kResultGrace);
      arm_deadline(w, id, timeout);
      return;
    }
    wire::TaskFailure verdict;
    verdict.set_kind(static_cast<std::uint32_t>(FailureKind::kTimeout));
    verdict.set_message("the task ran longer than its timeout of " + std::to_string(timeout) +
                        " ms; its worker was killed");
    verdict.set_signal(SIGKILL);
    w->verdict = verdict;
    w->verdict_task = id;
    ::kill(w->pid, SIGKILL);
  });
}

void WorkerPool::on_worker_message(const std::shared_ptr<Worker>& worker, wire::Envelope& message) {
  worker->reported = true;
  if (!message.has_task_done() || worker->queue.empty() ||
      message.task_done().task_id() != worker->queue.front().task_id()) {
    log()->warn("worker {} sent an unexpected message; stopping it", worker->pid);
    retire(worker);
    return;
  }
  if (!worker->drained_this_turn) {
    // Output the worker wrote before this batch of results is forwarded before them. One
    // poll() per batch: the rest of the batch arrived in the same read.
    drain_output(*worker);
    worker->drained_this_turn = true;
    std::weak_ptr<Worker> weak = worker;
    asio::post(io_, [weak] {
      if (auto w = weak.lock()) w->drained_this_turn = false;
    });
  }
  worker->deadline.reset();
  worker->count_result(std::chrono::steady_clock::now());
  const std::uint64_t id = worker->queue.front().task_id();
  ++counters_.images[worker->image].tasks_run;
  worker->queue.pop_front();
  worker->release_call(id);
  if (!worker->abandoned && cancelled_.erase(id) == 0) {
    wire::TaskResult result;
    result.set_task_id(id);
    result.set_server_id(server_id_);
    result.set_outcome(std::move(*message.mutable_task_done()->mutable_outcome()));
    callbacks_.on_result(std::move(result));
  }
  if (!worker->queue.empty()) front_started(worker);
  pump();
}

void WorkerPool::on_worker_gone(const std::shared_ptr<Worker>& worker) {
  if (worker->gone) return;
  worker->gone = true;
  reap(worker, 0);
}

void WorkerPool::reap(const std::shared_ptr<Worker>& worker, int attempts) {
  int status = 0;
  const pid_t r = ::waitpid(worker->pid, &status, WNOHANG);
  if (r == 0) {
    // The link closed but the process lingers: give it a moment, then make sure.
    if (attempts == 100) ::kill(worker->pid, SIGKILL);
    auto timer = std::make_shared<asio::steady_timer>(
        io_, std::chrono::milliseconds(attempts < 20 ? 1 : 20));
    timer->async_wait(
        [this, worker, attempts, timer](boost::system::error_code) { reap(worker, attempts + 1); });
    return;
  }
  drain_output(*worker);
  workers_.erase(std::remove(workers_.begin(), workers_.end(), worker), workers_.end());
  if (!worker->abandoned && !worker->retired && !shutting_down_) {
    ++(worker->verdict ? counters_.workers_killed : counters_.workers_crashed);
    replacements_owed_ = std::min<std::uint64_t>(replacements_owed_ + 1, capacity_);
  }
  worker->deadline.reset();
  boost::system::error_code ignored;
  worker->out->close(ignored);
  worker->err->close(ignored);
  // Exit 127 before it attached to its progress page or reported anything: the dynamic loader
  // could not start the program here. Every try would fail the same way; fail its tasks now.
  const bool attached =
      worker->reported ||
      (worker->progress && worker->progress->worker_features.load(std::memory_order_acquire));
  if (!worker->abandoned && !worker->verdict && r > 0 && WIFEXITED(status) &&
      WEXITSTATUS(status) == 127 && !attached) {
    cannot_start(worker);
    pump();
    return;
  }
  // Which task ended with the worker: the one the server passed a verdict on (timeout,
  // cancel), else the one the progress page says was running, else (a worker without a page)
  // the first unreported one. Only that task fails; the others, never started or finished
  // with their results lost in the worker's batch, are rerun.
  auto culprit = worker->queue.end();
  if (!worker->abandoned && !worker->queue.empty()) {
    auto find = [&](std::uint64_t id) {
      return std::find_if(worker->queue.begin(), worker->queue.end(),
                          [id](const wire::Assignment& a) { return a.task_id() == id; });
    };
    if (worker->verdict) {
      culprit = find(worker->verdict_task);  // end(): it reported already, nobody is to blame
    } else if (auto running = worker->running(); running && find(*running) != worker->queue.end()) {
      culprit = find(*running);
    } else {
      culprit = worker->queue.begin();
    }
  }
  if (culprit != worker->queue.end() && cancelled_.erase(culprit->task_id()) == 0) {
    wire::TaskResult result;
    result.set_task_id(culprit->task_id());
    result.set_server_id(server_id_);
    if (worker->verdict) {
      *result.mutable_failure() = *worker->verdict;
    } else {
      auto* failure = result.mutable_failure();
      failure->set_kind(static_cast<std::uint32_t>(FailureKind::kCrash));
      if (r > 0 && WIFSIGNALED(status)) {
        failure->set_signal(WTERMSIG(status));
        failure->set_message("worker killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
                             signal_name(WTERMSIG(status)) + ")");
      } else if (r > 0 && WIFEXITED(status)) {
        failure->set_exit_code(WEXITSTATUS(status));
        failure->set_message("worker exited with code " + std::to_string(WEXITSTATUS(status)) +
                             " while running the task");
      } else {
        failure->set_message("worker vanished while running the task");
      }
    }
    result.mutable_failure()->set_server(server_id_);
    log()->warn("task {} failed on worker {}: {}", result.task_id(), worker->pid,
                result.failure().message());
    callbacks_.on_result(std::move(result));
  }
  if (culprit != worker->queue.end()) {
    ++counters_.images[worker->image].tasks_crashed;
    worker->queue.erase(culprit);
  }
  // The other tasks: run them elsewhere, in their order, ahead of what waits.
  if (!worker->abandoned) {
    for (auto task = worker->queue.rbegin(); task != worker->queue.rend(); ++task) {
      if (cancelled_.erase(task->task_id()) == 0) waiting_.push_front(std::move(*task));
    }
  }
  worker->queue.clear();
  pump();
}

void WorkerPool::read_output(const std::shared_ptr<Worker>& worker, bool is_stderr) {
  auto& stream = is_stderr ? worker->err : worker->out;
  std::weak_ptr<Worker> weak = worker;
  // Wait, then read by hand: the owner must be looked up before the bytes are taken from the
  // pipe (see read_pipe).
  stream->async_wait(asio::posix::stream_descriptor::wait_read,
                     [this, weak, is_stderr](boost::system::error_code ec) {
                       auto w = weak.lock();
                       if (!w || ec) return;
                       continue_output(w, is_stderr);
                     });
}

void WorkerPool::continue_output(const std::shared_ptr<Worker>& worker, bool is_stderr) {
  switch (read_pipe(*worker, is_stderr, kReadsPerTurn)) {
    case PipeState::kDrained:
      read_output(worker, is_stderr);  // the next bytes are a new edge for the reactor
      break;
    case PipeState::kMore: {
      // A chatty task: let the other events of this turn run, then read on.
      std::weak_ptr<Worker> weak = worker;
      asio::post(io_, [this, weak, is_stderr] {
        if (auto w = weak.lock()) continue_output(w, is_stderr);
      });
      break;
    }
    case PipeState::kClosed:
      break;
  }
}

WorkerPool::PipeState WorkerPool::read_pipe(Worker& worker, bool is_stderr, int max_reads) {
  auto& stream = is_stderr ? worker.err : worker.out;
  if (!stream || !stream->is_open()) return PipeState::kClosed;
  std::string& chunk = is_stderr ? worker.err_buffer : worker.out_buffer;
  chunk.resize(16384);
  for (int reads = 0; reads < max_reads; ++reads) {
    // Whose bytes these are: with a progress page, the task it names now. The worker does not
    // name its next task while its pipes hold unread output of the current one, so bytes
    // read after this look-up were written by this task (or a later one is not running yet).
    const std::uint64_t owner = worker.running().value_or(worker.output_owner);
    const ssize_t n = ::read(stream->native_handle(), chunk.data(), chunk.size());  // non-blocking
    if (n == 0) return PipeState::kClosed;  // the worker closed it: it is gone
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? PipeState::kDrained : PipeState::kClosed;
    }
    if (is_stderr && !worker.reported && worker.early_stderr.size() < kStartErrorBytes)
      worker.early_stderr.append(
          chunk.data(), std::min<std::size_t>(static_cast<std::size_t>(n), kStartErrorBytes));
    if (callbacks_.on_output)
      callbacks_.on_output(owner, is_stderr, chunk.substr(0, static_cast<std::size_t>(n)));
  }
  return PipeState::kMore;
}

void WorkerPool::drain_output(Worker& worker) {
  // What the worker wrote before it reported belongs to the tasks it reported; read it now,
  // before the results leave. One poll() tells whether there is anything at all, so a quiet
  // batch costs one system call here.
  pollfd fds[2] = {
      {worker.out && worker.out->is_open() ? worker.out->native_handle() : -1, POLLIN, 0},
      {worker.err && worker.err->is_open() ? worker.err->native_handle() : -1, POLLIN, 0}};
  if (::poll(fds, 2, 0) <= 0) return;
  // Up to 1 MiB: the bytes of the reported tasks leave before their results (the worker waits
  // for them to be read before it names its next task, so a task printing without pause now
  // is a later one, left to read_output).
  for (int i = 0; i < 2; ++i)
    if (fds[i].revents & POLLIN) read_pipe(worker, i == 1, 8 * kReadsPerTurn);
}

void WorkerPool::cancel(std::uint64_t task_id) {
  for (auto task = waiting_.begin(); task != waiting_.end(); ++task) {
    if (task->task_id() != task_id) continue;
    waiting_.erase(task);
    fail_task(task_id, static_cast<std::uint32_t>(FailureKind::kCancelled),
              "cancelled before it ran");
    return;
  }
  for (auto& w : workers_) {
    for (std::size_t i = 0; i < w->queue.size(); ++i) {
      if (w->queue[i].task_id() != task_id) continue;
      const auto running = w->running_unreported();
      if (running ? *running == task_id : i == 0) {
        wire::TaskFailure verdict;
        verdict.set_kind(static_cast<std::uint32_t>(FailureKind::kCancelled));
        verdict.set_message("cancelled while running; its worker was stopped");
        w->verdict = verdict;
        w->verdict_task = task_id;
        ::kill(w->pid, SIGKILL);
      } else {
        // Already in the worker's socket: it may still run, but its result is not reported.
        cancelled_.insert(task_id);
        fail_task(task_id, static_cast<std::uint32_t>(FailureKind::kCancelled),
                  "cancelled before it ran");
      }
      return;
    }
  }
}

std::vector<std::uint64_t> WorkerPool::hand_back_unstarted() {
  // Tasks already sent to a worker stay: it may be starting one this instant, and a task must
  // not run here and elsewhere. That is at most about kQueuedWork of work behind each running
  // task (one task when tasks are long).
  std::vector<std::uint64_t> ids;
  for (const auto& task : waiting_) ids.push_back(task.task_id());
  waiting_.clear();
  return ids;
}

void WorkerPool::fail_task(std::uint64_t task_id, std::uint32_t kind, const std::string& message,
                           int exit_code, int signal) {
  wire::TaskResult result;
  result.set_task_id(task_id);
  result.set_server_id(server_id_);
  auto* failure = result.mutable_failure();
  failure->set_kind(kind);
  failure->set_message(message);
  failure->set_server(server_id_);
  failure->set_exit_code(exit_code);
  failure->set_signal(signal);
  callbacks_.on_result(std::move(result));
}

void WorkerPool::cannot_start(const std::shared_ptr<Worker>& worker) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string why = worker->early_stderr;
  while (!why.empty() && (why.back() == '\n' || why.back() == '\r')) why.pop_back();
  if (why.empty()) why = "the worker exited with code 127 before it started";
  Image& image = images_[worker->image];
  image.start_error =
      "cannot start the program on server " + server_id_ + " (host " + host + "): " + why;
  image.start_failed_at = std::chrono::steady_clock::now();
  image.start_error_library_set = worker->library_set;
  log()->error("{}", image.start_error);
  for (auto& task : worker->queue)
    if (cancelled_.erase(task.task_id()) == 0)
      fail_task(task.task_id(), static_cast<std::uint32_t>(FailureKind::kCrash), image.start_error,
                127);
  worker->queue.clear();
  // Waiting tasks of this program fail in pump(), which sees start_error.
}

void WorkerPool::set_worker_environment(std::vector<std::string> entries) {
  if (entries == worker_environment_) return;
  worker_environment_ = std::move(entries);
  ++environment_generation_;
  std::vector<std::shared_ptr<Worker>> idle;
  for (auto& w : workers_)
    if (w->queue.empty() && !w->gone && !w->retired) idle.push_back(w);
  for (auto& w : idle) retire(w);
}

void WorkerPool::retire(const std::shared_ptr<Worker>& worker) {
  if (worker->gone) return;
  worker->retired = true;
  ::kill(worker->pid, SIGKILL);
  worker->link->close("retired");
}

void WorkerPool::abandon_all() {
  waiting_.clear();
  for (auto& w : workers_) {
    if (w->queue.empty()) continue;
    w->abandoned = true;
    ::kill(w->pid, SIGKILL);
  }
  cancelled_.clear();
  for (auto& [sha, image] : images_) image.fetching = false;
}

void WorkerPool::shutdown() {
  shutting_down_ = true;
  waiting_.clear();
  for (auto& w : workers_) {
    w->abandoned = true;
    if (!w->gone) {
      ::kill(w->pid, SIGKILL);
      ::waitpid(w->pid, nullptr, 0);
      w->gone = true;
    }
    w->deadline.reset();
    w->link->close("server stopping");
    boost::system::error_code ignored;
    w->out->close(ignored);
    w->err->close(ignored);
  }
  workers_.clear();
}

}  // namespace clupy::server
