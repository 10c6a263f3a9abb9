#include "slurm/slurm_env.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <sstream>
#include <thread>

#include "clupy/errors.hpp"

extern char** environ;

namespace clupy::slurm {

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

std::optional<long long> env_number(const char* name) {
  const char* value = std::getenv(name);
  if (!value || !*value) return std::nullopt;
  char* end = nullptr;
  const long long n = std::strtoll(value, &end, 10);
  if (end == value) return std::nullopt;
  return n;
}

// SLURM_TASKS_PER_NODE ("2(x3),1") for node `index` of the step.
int tasks_on_node(const std::string& spec, int index) {
  std::stringstream in(spec);
  std::string item;
  int node = 0;
  while (std::getline(in, item, ',')) {
    std::smatch m;
    int count = 0, repeat = 1;
    if (std::regex_match(item, m, std::regex(R"((\d+)\(x(\d+)\))"))) {
      count = std::stoi(m[1]);
      repeat = std::stoi(m[2]);
    } else if (std::regex_match(item, m, std::regex(R"((\d+))"))) {
      count = std::stoi(m[1]);
    } else {
      return 1;
    }
    if (index < node + repeat) return std::max(1, count);
    node += repeat;
  }
  return 1;
}

std::string resolve_ipv4(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) return "";
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr, text,
              sizeof text);
  ::freeaddrinfo(found);
  return text;
}

}  // namespace

StepInfo current_step() {
  StepInfo step;
  step.job_id = env_or("SLURM_JOB_ID", "");
  if (step.job_id.empty())
    throw ConfigError(
        "not inside a Slurm job: SLURM_JOB_ID is not set (run `srun clupy --slurm ...` in a batch "
        "script or an allocation)");
  step.step_id = env_or("SLURM_STEP_ID", "batch");
  step.proc_id = static_cast<int>(env_number("SLURM_PROCID").value_or(0));
  step.local_id = static_cast<int>(env_number("SLURM_LOCALID").value_or(0));
  step.tasks_on_node =
      tasks_on_node(env_or("SLURM_STEP_TASKS_PER_NODE", env_or("SLURM_TASKS_PER_NODE", "1")),
                    static_cast<int>(env_number("SLURM_NODEID").value_or(0)));
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  step.node_name = env_or("SLURMD_NODENAME", host);
  char cwd[4096] = {};
  step.submit_dir = env_or("SLURM_SUBMIT_DIR", ::getcwd(cwd, sizeof cwd) ? cwd : ".");
  step.end_time = env_number("SLURM_JOB_END_TIME");
  if (const std::string port = env_or("SLURM_SRUN_COMM_PORT", ""); !port.empty())
    step.srun = env_or("SLURM_SRUN_COMM_HOST", "") + ":" + port;
  return step;
}

int slurm_capacity() {
  if (auto per_task = env_number("SLURM_CPUS_PER_TASK"); per_task && *per_task > 0)
    return static_cast<int>(*per_task);
  if (auto on_node = env_number("SLURM_CPUS_ON_NODE"); on_node && *on_node > 0) {
    const StepInfo step = current_step();
    return std::max(1, static_cast<int>(*on_node) / std::max(1, step.tasks_on_node));
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

CommandResult run_command(const std::vector<std::string>& argv) {
  CommandResult result;
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, out[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    result.output = argv[0] + ": " + std::strerror(rc);
    return result;
  }
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n > 0) {
      result.output.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string interface_address(const std::string& interface) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0)
    throw ConfigError(std::string("cannot list network interfaces: ") + std::strerror(errno));
  std::string address;
  std::vector<std::string> names;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    names.emplace_back(i->ifa_name);
    if (interface != i->ifa_name || !address.empty()) continue;
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
    address = text;
  }
  ::freeifaddrs(list);
  if (address.empty()) {
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    throw ConfigError("network interface '" + interface +
                      "' has no IPv4 address here (interfaces " + "with one: " + known + ")");
  }
  return address;
}

std::string node_address(const std::string& node_name) {
  const auto shown = run_command({"scontrol", "-o", "show", "node", node_name});
  std::smatch m;
  std::string node_addr;
  if (shown.status == 0 && std::regex_search(shown.output, m, std::regex(R"(NodeAddr=(\S+))")))
    node_addr = m[1];
  for (const std::string& host : {node_addr, node_name}) {
    if (host.empty()) continue;
    if (auto ip = resolve_ipv4(host); !ip.empty()) return ip;
  }
  throw ConfigError("cannot find the address of node " + node_name + " (NodeAddr '" + node_addr +
                    "' from `scontrol show node`): give one with --slurm-interface or " +
                    "--slurm-address");
}

std::optional<long long> parse_time_left(const std::string& raw) {
  std::string text = raw;
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  std::smatch m;
  if (!std::regex_match(text, m, std::regex(R"((?:(\d+)-)?(?:(\d+):)?(\d+):(\d+))")))
    return std::nullopt;  // UNLIMITED, NOT_SET, INVALID, or nothing (the job is gone)
  const long long days = m[1].matched ? std::stoll(m[1]) : 0;
  long long hours = 0, minutes = 0, seconds = 0;
  if (m[2].matched) {
    hours = std::stoll(m[2]);
    minutes = std::stoll(m[3]);
  } else if (m[1].matched) {
    hours = std::stoll(m[3]);  // "days-hours:minutes"
    minutes = std::stoll(m[4]);
    return ((days * 24 + hours) * 60 + minutes) * 60;
  } else {
    minutes = std::stoll(m[3]);
  }
  seconds = std::stoll(m[4]);
  return ((days * 24 + hours) * 60 + minutes) * 60 + seconds;
}

std::optional<long long> seconds_left(const std::string& job_id) {
  const auto shown = run_command({"squeue", "-h", "-j", job_id, "-o", "%L"});
  if (shown.status != 0) return std::nullopt;
  return parse_time_left(shown.output);
}

std::chrono::seconds kill_wait() {
  const auto shown = run_command({"scontrol", "show", "config"});
  std::smatch m;
  if (shown.status == 0 &&
      std::regex_search(shown.output, m, std::regex(R"(KillWait\s*=\s*(\d+))")))
    return std::chrono::seconds(std::stoll(m[1]));
  return std::chrono::seconds(30);  // Slurm's default
}

std::string resolve_program(const std::string& program) {
  auto check = [&](const std::string& path) -> std::string {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return "";
    if (S_ISDIR(st.st_mode) || ::access(path.c_str(), X_OK) != 0)
      throw ConfigError("program " + path + " is not executable (--slurm-run)");
    return path;
  };
  if (program.find('/') != std::string::npos) {
    if (auto found = check(program); !found.empty()) return found;
    char cwd[4096] = {};
    throw ConfigError("program " + program + " not found (--slurm-run; working directory " +
                      (::getcwd(cwd, sizeof cwd) ? cwd : "?") + ")");
  }
  const std::string path = env_or("PATH", "/usr/local/bin:/usr/bin:/bin");
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (auto found = check((dir.empty() ? "." : dir) + "/" + program); !found.empty()) return found;
  throw ConfigError("program " + program + " not found in PATH (" + path +
                    "); give its path, e.g. ./" + program + " (--slurm-run)");
}

}  // namespace clupy::slurm
