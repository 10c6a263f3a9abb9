#include "deps/command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace clupy::deps {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kTailBytes = 4096;

struct Spawned {
  pid_t pid = -1;
  int out_fd = -1;
  std::string error;
};

// Starts argv with stdin from /dev/null and stdout (and stderr when `merge_stderr`, else
// /dev/null) into a pipe, as the leader of a new process group.
Spawned spawn(const std::vector<std::string>& argv, bool merge_stderr,
              const std::vector<std::string>& extra_environment) {
  Spawned spawned;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    spawned.error = std::string("pipe: ") + std::strerror(errno);
    return spawned;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  if (merge_stderr)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  else
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setpgroup(&attributes, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  for (const auto& entry : extra_environment) env_storage.push_back(entry);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (auto& a : args) argp.push_back(a.data());
  argp.push_back(nullptr);
  const int rc =
      ::posix_spawnp(&spawned.pid, argp[0], &actions, &attributes, argp.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    spawned.pid = -1;
    spawned.error = "cannot start " + argv[0] + ": " + std::strerror(rc);
    return spawned;
  }
  spawned.out_fd = fds[0];
  return spawned;
}

void remember_tail(std::string& tail, const char* data, std::size_t size) {
  tail.append(data, size);
  if (tail.size() > 2 * kTailBytes) tail.erase(0, tail.size() - kTailBytes);
}

// Reads until EOF, the deadline, or cancellation; then kills the group if it is not done, and
// reaps the leader.
CommandResult supervise(Spawned spawned, Clock::time_point deadline,
                        const std::function<void(const std::string&)>& on_line,
                        const std::function<void()>& on_idle, const std::atomic<bool>* cancel,
                        std::string* whole_output) {
  CommandResult result;
  result.started = true;
  std::string partial;
  char buffer[4096];
  bool open = true;
  while (open) {
    if (cancel != nullptr && cancel->load()) {
      result.cancelled = true;
      break;
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      result.timed_out = true;
      break;
    }
    const auto wait = std::min<long long>(
        200, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1);
    pollfd pfd{spawned.out_fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(wait));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0 && on_idle) on_idle();
    if (ready <= 0) continue;
    const ssize_t n = ::read(spawned.out_fd, buffer, sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      open = false;
      break;
    }
    if (whole_output != nullptr) whole_output->append(buffer, static_cast<std::size_t>(n));
    remember_tail(result.output_tail, buffer, static_cast<std::size_t>(n));
    partial.append(buffer, static_cast<std::size_t>(n));
    for (auto newline = partial.find_first_of("\r\n"); newline != std::string::npos;
         newline = partial.find_first_of("\r\n")) {
      std::string line = partial.substr(0, newline);
      partial.erase(0, newline + 1);
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      result.last_line = line;
      if (on_line) on_line(line);
    }
  }
  if (!partial.empty() && partial.find_first_not_of(" \t") != std::string::npos) {
    result.last_line = partial;
    if (on_line) on_line(partial);
  }
  if (open) ::kill(-spawned.pid, SIGKILL);  // the whole group: an installer's children too
  ::close(spawned.out_fd);
  int status = 0;
  while (::waitpid(spawned.pid, &status, 0) < 0 && errno == EINTR) {
  }
  // A child of the group may outlive the leader holding nothing we wait on; make sure it goes.
  if (result.timed_out || result.cancelled) ::kill(-spawned.pid, SIGKILL);
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  if (result.output_tail.size() > kTailBytes)
    result.output_tail.erase(0, result.output_tail.size() - kTailBytes);
  return result;
}

std::string format_duration(std::chrono::milliseconds d) {
  if (d.count() % 1000 != 0) return std::to_string(d.count()) + "ms";
  return std::to_string(d.count() / 1000) + "s";
}

}  // namespace

std::string CommandResult::describe() const {
  if (!started) return error;
  if (timed_out) return "killed after its timeout";
  if (cancelled) return "cancelled";
  if (signal != 0) return "killed by signal " + std::to_string(signal);
  return "exit code " + std::to_string(exit_code);
}

CommandResult run_shell_command(const std::string& command, const CommandOptions& options) {
  std::vector<std::string> environment = options.extra_environment;
  environment.push_back("DEBIAN_FRONTEND=noninteractive");  // never wait for an answer
  Spawned spawned = spawn({"/bin/sh", "-c", command}, true, environment);
  if (spawned.pid < 0) {
    CommandResult result;
    result.error = spawned.error;
    return result;
  }
  CommandResult result = supervise(spawned, Clock::now() + options.timeout, options.on_line,
                                   options.on_idle, options.cancel, nullptr);
  if (result.timed_out)
    result.error =
        "killed after its " + format_duration(options.timeout) + " timeout (install_timeout)";
  return result;
}

CommandResult run_query(const std::vector<std::string>& argv, std::string& stdout_text,
                        std::chrono::milliseconds timeout) {
  stdout_text.clear();
  Spawned spawned = spawn(argv, false, {});
  if (spawned.pid < 0) {
    CommandResult result;
    result.error = spawned.error;
    return result;
  }
  return supervise(spawned, Clock::now() + timeout, nullptr, nullptr, nullptr, &stdout_text);
}

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

}  // namespace clupy::deps
