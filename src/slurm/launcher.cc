// `srun clupy --slurm`: one launcher per task of the step (see slurm.hpp for the whole story).
//
// The job folder holds what the tasks share: `token` (mode 0600, made by the first task) and
// `cluster.env` (CLUPY_MASTER_URL, CLUPY_TOKEN_FILE and CLUPY_SLURM_STEP, the step that started
// the master; or CLUPY_SLURM_ERROR when the first task failed), and `stop` (the step whose
// cluster is over). Files are replaced by rename, so a reader never sees half of one, and carry
// the step, so files of an earlier step of the same job are never taken for this one's.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "clupy/cluster.hpp"
#include "clupy/errors.hpp"
#include "common/auth.hpp"
#include "common/config.hpp"
#include "common/log.hpp"
#include "common/url.hpp"
#include "server/server.hpp"
#include "slurm/slurm.hpp"
#include "slurm/slurm_env.hpp"

extern char** environ;

namespace clupy::slurm {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

auto log() { return common::logger("slurm"); }

// A server stops this long before Slurm's SIGKILL at the latest (its goodbye must get out).
constexpr auto kStopMargin = 3s;
// How long the first task waits for the master to listen, and the others to leave at the end.
constexpr auto kMasterStartTimeout = 30s;
constexpr auto kServersLeaveTimeout = 10s;
constexpr auto kTick = 100ms;

std::map<std::string, std::string> read_env_file(const std::string& path) {
  std::map<std::string, std::string> values;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) values[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return values;
}

void write_atomically(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << contents;
    if (!out) throw ConfigError("cannot write " + tmp + " (is the job folder writable?)");
  }
  fs::rename(tmp, path);
}

std::string self_executable() {
  std::error_code ec;
  auto path = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw ConfigError("cannot find the clupy executable (/proc/self/exe): " + ec.message());
  return path.string();
}

// fork+exec, so that the child can be told to die with this process (PR_SET_PDEATHSIG): a
// launcher killed outright must not leave a master or a program behind on the node.
pid_t spawn_child(const std::vector<std::string>& argv, const std::vector<std::string>& env_set,
                  const std::vector<std::string>& env_unset) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    bool dropped = false;
    for (const auto& u : env_unset) dropped |= name == u;
    for (const auto& s : env_set) dropped |= name == s.substr(0, s.find('='));
    if (!dropped) env.push_back(entry);
  }
  for (const auto& s : env_set) env.push_back(s);
  std::vector<char*> args, envp;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw ConfigError(std::string("cannot start a process: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

int exit_status(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

// Waits for `pid` for at most `timeout`; SIGKILL after that. Returns its wait status.
int reap(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int status = 0;
  while (Clock::now() < deadline) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return status;
    std::this_thread::sleep_for(20ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return status;
}

volatile std::sig_atomic_t early_signal = 0;
void note_signal(int signo) { early_signal = signo; }

class Launcher {
 public:
  explicit Launcher(Options options) : options_(std::move(options)) {}
  ~Launcher() { stop_poller(); }

  int run();

 private:
  bool first() const {
    return options_.join.empty() && options_.master_url.empty() && step_.proc_id == 0;
  }
  void start_master();
  void wait_for_master();
  void publish_error(const std::string& message);
  int serve();
  void run_program();  // on program_watch_
  void tick();
  void on_signal(int signo);
  void start_poller();
  void stop_poller();
  void finish_first();

  Options options_;
  StepInfo step_;
  std::string folder_;
  std::string local_dir_;  // this task's scratch on the node: master data, image cache
  std::string master_url_;
  std::string token_file_;
  std::string cluster_step_;  // the step that started the master we serve
  std::vector<std::string> program_;
  pid_t master_pid_ = -1;
  std::atomic<pid_t> program_pid_{-1};
  std::atomic<bool> program_cancelled_{false};
  std::optional<int> program_status_;
  std::chrono::seconds kill_wait_{30};

  asio::io_context io_{1};
  std::unique_ptr<server::ServerDaemon> daemon_;
  std::unique_ptr<asio::signal_set> signals_;
  std::unique_ptr<asio::steady_timer> ticker_;
  std::optional<Clock::time_point> end_;  // the job's time limit, as last read
  bool done_ = false;

  std::thread poller_;
  std::thread program_watch_;
  std::mutex poller_mu_;
  std::condition_variable poller_cv_;
  bool poller_stop_ = false;
};

int Launcher::run() {
  step_ = current_step();
  if (!options_.join.empty()) {
    folder_ = options_.join;
  } else if (options_.master_url.empty()) {
    folder_ = job_folder(options_, step_.job_id, step_.submit_dir);
  }
  const char* tmp = std::getenv("TMPDIR");
  local_dir_ = std::string(tmp && *tmp ? tmp : "/tmp") + "/clupy-slurm-" + step_.job_id + "." +
               step_.step_id + "-" + std::to_string(::getpid()) + "-" + step_.node_name + "-" +
               std::to_string(step_.local_id);
  fs::create_directories(local_dir_);

  // Until the server runs, a signal only ends the wait.
  struct sigaction action {};
  action.sa_handler = note_signal;
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);

  int status = 0;
  try {
    if (first()) {
      if (!options_.program.empty()) {
        program_ = options_.program;
        program_[0] = resolve_program(program_[0]);
      }
      start_master();
    } else {
      wait_for_master();
    }
    status = serve();
  } catch (const Error& e) {
    if (first()) publish_error(e.what());
    if (master_pid_ > 0) {
      ::kill(master_pid_, SIGTERM);
      reap(master_pid_, 5s);
    }
    std::error_code ignored;
    fs::remove_all(local_dir_, ignored);
    throw;
  }
  std::error_code ignored;
  fs::remove_all(local_dir_, ignored);
  return status;
}

void Launcher::publish_error(const std::string& message) {
  try {
    fs::create_directories(folder_);
    write_atomically(folder_ + "/cluster.env", "CLUPY_SLURM_STEP=" + step_.step_key() +
                                                   "\nCLUPY_SLURM_ERROR=" + message + "\n");
  } catch (const std::exception&) {
    // No folder to tell the others in: they time out saying so.
  }
}

void Launcher::start_master() {
  std::error_code ec;
  fs::create_directories(folder_, ec);
  if (ec || ::access(folder_.c_str(), W_OK) != 0)
    throw ConfigError("cannot create the job folder " + folder_ + ": " +
                      (ec ? ec.message() : std::strerror(errno)) +
                      " (it must be on a filesystem every node shares; choose it with "
                      "--slurm-dir)");
  fs::permissions(folder_, fs::perms::owner_all, fs::perm_options::replace, ec);
  // Files of an earlier step of this job are stale from now on.
  for (const char* name : {"/cluster.env", "/stop"}) fs::remove(folder_ + name, ec);
  token_file_ = fs::absolute(folder_ + "/token").string();
  common::load_or_create_token(token_file_);  // fresh per job; checks the mode of an old one

  const std::string address = !options_.address.empty()     ? options_.address
                              : !options_.interface.empty() ? interface_address(options_.interface)
                                                            : node_address(step_.node_name);
  const std::string port_file = local_dir_ + "/master.port";
  std::vector<std::string> argv = {self_executable(), "--master",   "--bind",
                                   address,           "--port",     "0",
                                   "--port-file",     port_file,    "--token-file",
                                   token_file_,       "--data-dir", local_dir_ + "/master"};
  if (!options_.log_level.empty()) argv.insert(argv.end(), {"--log-level", options_.log_level});
  master_pid_ = spawn_child(argv, {}, {"CLUPY_TOKEN", "CLUPY_TOKEN_FILE"});

  const auto deadline = Clock::now() + kMasterStartTimeout;
  std::string port;
  while (port.empty()) {
    int status = 0;
    if (::waitpid(master_pid_, &status, WNOHANG) == master_pid_) {
      master_pid_ = -1;
      throw ConfigError("the master exited with status " + std::to_string(exit_status(status)) +
                        " before it listened on " + address + " (its log is above)");
    }
    if (early_signal != 0) throw ConfigError("stopped by a signal while the master started");
    if (Clock::now() > deadline)
      throw ConfigError("the master did not listen on " + address + " within 30 s");
    std::ifstream in(port_file);
    std::getline(in, port);
    if (port.empty()) std::this_thread::sleep_for(20ms);
  }
  master_url_ = "clupy://" + address + ":" + port;
  cluster_step_ = step_.step_key();
  write_atomically(folder_ + "/cluster.env", "CLUPY_MASTER_URL=" + master_url_ +
                                                 "\nCLUPY_TOKEN_FILE=" + token_file_ +
                                                 "\nCLUPY_SLURM_STEP=" + cluster_step_ + "\n");
  log()->info("master {} published in {}", master_url_, folder_);
}

void Launcher::wait_for_master() {
  if (!options_.master_url.empty()) {
    master_url_ = options_.master_url;
    token_file_ = options_.token_file;
  } else {
    // The first task of this step publishes it; a joining job takes whatever is published.
    const auto deadline = Clock::now() + options_.wait;
    for (;;) {
      auto published = read_env_file(folder_ + "/cluster.env");
      const bool ours = !options_.join.empty() || published["CLUPY_SLURM_STEP"] == step_.step_key();
      if (ours && !published["CLUPY_SLURM_ERROR"].empty())
        throw ConfigError("the first task of the step failed: " + published["CLUPY_SLURM_ERROR"]);
      if (ours && !published["CLUPY_MASTER_URL"].empty()) {
        master_url_ = published["CLUPY_MASTER_URL"];
        token_file_ = published["CLUPY_TOKEN_FILE"];
        cluster_step_ = published["CLUPY_SLURM_STEP"];
        break;
      }
      if (early_signal != 0) throw ConfigError("stopped by a signal while waiting for the master");
      if (Clock::now() > deadline)
        throw ConfigError(
            "no master published in " + folder_ + "/cluster.env after " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::seconds>(options_.wait).count()) +
            " s: " +
            (options_.join.empty()
                 ? "the task of SLURM_PROCID 0 writes it there; is " + folder_ +
                       " on a filesystem every node shares? (choose it with --slurm-dir)"
                 : "is a cluster running with that job folder?"));
      std::this_thread::sleep_for(50ms);
    }
  }
  if (token_file_.empty()) throw ConfigError("no token file for master " + master_url_);
  common::read_token_file(token_file_);  // a clear error for a missing or loose one, now
  // An admin handshake: proves the address answers and the token is the master's.
  ConnectOptions connect;
  connect.master_url = master_url_;
  connect.token_file = token_file_;
  connect.timeout = 3s;
  std::string why = "not tried";
  const auto deadline = Clock::now() + std::min<std::chrono::milliseconds>(options_.wait, 10s);
  while (Clock::now() < deadline) {
    try {
      cluster_status(connect);
      return;
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (early_signal != 0) throw ConfigError("stopped by a signal while reaching the master");
    std::this_thread::sleep_for(200ms);
  }
  throw ConfigError("node " + step_.node_name + " cannot reach the master at " + master_url_ +
                    " (" + why + "); the address is the first node's NodeAddr unless " +
                    "--slurm-interface or --slurm-address chose another");
}

int Launcher::serve() {
  auto config = common::load_server_config(options_.server_config);
  config.master_url = master_url_;
  config.token_file = token_file_;
  ::setenv("CLUPY_TOKEN_FILE", token_file_.c_str(), 1);  // resolve_token looks here first
  ::unsetenv("CLUPY_TOKEN");
  std::string id = step_.node_name;
  if (!options_.join.empty() || !options_.master_url.empty()) id += "-j" + step_.job_id;
  if (step_.tasks_on_node > 1) id += "-" + std::to_string(step_.local_id);
  config.server_id = id;
  config.capacity = options_.capacity ? *options_.capacity : slurm_capacity();
  if (config.cache_dir == common::ServerConfig{}.cache_dir)
    config.cache_dir = local_dir_ + "/cache";
  if (!options_.log_level.empty()) config.log_level = options_.log_level;
  common::set_log_level(common::parse_log_level(config.log_level));

  daemon_ = std::make_unique<server::ServerDaemon>(io_, config);
  daemon_->set_workers_block_sigterm(true);
  daemon_->start();
  signals_ = std::make_unique<asio::signal_set>(io_, SIGINT, SIGTERM);
  std::function<void(boost::system::error_code, int)> on_signal_handler =
      [this, &on_signal_handler](boost::system::error_code ec, int signo) {
        if (ec) return;
        on_signal(signo);
        signals_->async_wait(on_signal_handler);
      };
  signals_->async_wait(on_signal_handler);
  if (early_signal != 0) asio::post(io_, [this] { on_signal(early_signal); });

  if (!program_.empty()) {
    program_watch_ = std::thread([this] { run_program(); });
  }
  start_poller();
  ticker_ = std::make_unique<asio::steady_timer>(io_);
  tick();
  io_.run();
  stop_poller();
  if (program_watch_.joinable()) program_watch_.join();
  if (first()) finish_first();
  return program_status_.value_or(0);
}

void Launcher::run_program() {
  // The program starts once every task's server has registered (or options_.wait passed), so
  // that it sees the whole cluster from its first task on.
  const int servers = std::max(
      1, static_cast<int>(std::strtol(
             std::getenv("SLURM_NTASKS") ? std::getenv("SLURM_NTASKS") : "1", nullptr, 10)));
  ConnectOptions connect;
  connect.master_url = master_url_;
  connect.token_file = token_file_;
  connect.timeout = 2s;
  const auto deadline = Clock::now() + options_.wait;
  std::size_t registered = 0;
  while (!program_cancelled_ && Clock::now() < deadline) {
    try {
      registered = cluster_status(connect).servers.size();
    } catch (const std::exception&) {
      registered = 0;
    }
    if (registered >= static_cast<std::size_t>(servers)) break;
    std::this_thread::sleep_for(20ms);
  }
  if (registered < static_cast<std::size_t>(servers) && !program_cancelled_)
    log()->warn("only {} of {} servers registered after {} s; starting {} anyway", registered,
                servers, std::chrono::duration_cast<std::chrono::seconds>(options_.wait).count(),
                program_[0]);
  int status = 0;
  pid_t pid = -1;
  if (!program_cancelled_) {
    try {
      pid = spawn_child(program_,
                        {"CLUPY_MASTER_URL=" + master_url_, "CLUPY_TOKEN_FILE=" + token_file_},
                        {"CLUPY_TOKEN"});
    } catch (const std::exception& e) {
      log()->error("cannot start {}: {}", program_[0], e.what());
    }
  }
  if (pid > 0) {
    program_pid_ = pid;
    log()->info("running {} on {} (pid {}, {} servers)", program_[0], master_url_, pid, registered);
    if (program_cancelled_) ::kill(pid, SIGTERM);  // a signal came while it started
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  } else {
    status = 127 << 8;  // as a shell reports a program it could not start
  }
  asio::post(io_, [this, status] {
    program_status_ = exit_status(status);
    log()->info("{} exited with status {}; stopping the cluster", program_[0], *program_status_);
    daemon_->stop();
  });
}

void Launcher::tick() {
  const bool program_running = !program_.empty() && !program_status_;
  if (daemon_->stopping() && !program_running) {
    // The daemon's goodbye is on its way; io_.run() returns once it is written.
    done_ = true;
    signals_->cancel();
    return;
  }
  if (!daemon_->stopping()) {
    // The cluster of the first task is over (its program ended, or it was stopped).
    const std::string stop_file = folder_.empty() ? "" : folder_ + "/stop";
    if (!first() && !stop_file.empty()) {
      std::ifstream in(stop_file);
      std::string stopped;
      if (std::getline(in, stopped) && stopped == cluster_step_) {
        log()->info("the cluster of step {} is over", cluster_step_);
        daemon_->stop();
      }
    }
    if (end_ && Clock::now() >= *end_ - options_.drain_before && !daemon_->draining()) {
      log()->info("the job's time limit is {} s away: draining",
                  std::chrono::duration_cast<std::chrono::seconds>(*end_ - Clock::now()).count());
      daemon_->drain(*end_ - kStopMargin);
    }
  }
  ticker_->expires_after(kTick);
  ticker_->async_wait([this](boost::system::error_code ec) {
    if (!ec) tick();
  });
}

void Launcher::on_signal(int signo) {
  // scancel and the time limit signal every process of the step: workers block SIGTERM, and the
  // server drains within KillWait.
  log()->info("signal {}: draining within {} s", signo, kill_wait_.count());
  program_cancelled_ = true;
  if (const pid_t pid = program_pid_; pid > 0 && !program_status_) ::kill(pid, signo);
  daemon_->drain(Clock::now() + kill_wait_ - kStopMargin);
}

void Launcher::start_poller() {
  kill_wait_ = kill_wait();
  if (step_.end_time) {
    const auto left = std::chrono::seconds(*step_.end_time - ::time(nullptr));
    end_ = Clock::now() + left;
  }
  poller_ = std::thread([this] {
    std::unique_lock lock(poller_mu_);
    while (!poller_stop_) {
      lock.unlock();
      const auto left = seconds_left(step_.job_id);
      const auto now = Clock::now();
      lock.lock();
      if (left) {
        asio::post(io_, [this, end = now + std::chrono::seconds(*left)] {
          if (!end_ || end < *end_ - 1s || end > *end_ + 1s) {
            if (end_)
              log()->info(
                  "the job's time limit moved: {} s left",
                  std::chrono::duration_cast<std::chrono::seconds>(end - Clock::now()).count());
            end_ = end;
          }
        });
      }
      poller_cv_.wait_for(lock, options_.end_time_poll, [this] { return poller_stop_; });
    }
  });
}

void Launcher::stop_poller() {
  {
    std::lock_guard lock(poller_mu_);
    poller_stop_ = true;
  }
  poller_cv_.notify_all();
  if (poller_.joinable()) poller_.join();
}

void Launcher::finish_first() {
  // Tell the other tasks, let their servers unregister, then stop the master.
  try {
    write_atomically(folder_ + "/stop", cluster_step_ + "\n");
  } catch (const std::exception& e) {
    log()->warn("cannot write the stop file: {}", e.what());
  }
  ConnectOptions connect;
  connect.master_url = master_url_;
  connect.token_file = token_file_;
  connect.timeout = 2s;
  const auto deadline = Clock::now() + kServersLeaveTimeout;
  while (Clock::now() < deadline) {
    try {
      if (cluster_status(connect).servers.empty()) break;
    } catch (const std::exception&) {
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  if (master_pid_ > 0) {
    ::kill(master_pid_, SIGTERM);
    reap(master_pid_, 10s);
    master_pid_ = -1;
  }
  log()->info("cluster of step {} stopped", cluster_step_);
}

}  // namespace

std::string job_folder(const Options& options, const std::string& job_id,
                       const std::string& submit_dir) {
  std::string base = options.dir;
  if (base.empty()) {
    const char* env = std::getenv("CLUPY_SLURM_DIR");
    base = env && *env ? env : submit_dir + "/.clupy";
  }
  return fs::absolute(base + "/" + job_id).lexically_normal().string();
}

int run(const Options& options) {
  Launcher launcher(options);
  return launcher.run();
}

}  // namespace clupy::slurm
