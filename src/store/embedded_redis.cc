#include "store/embedded_redis.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <clupy/store.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "store/redis.hpp"

namespace clupy::store {
namespace {

std::string find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string log_tail(const std::string& path) {
  std::ifstream in(path);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  constexpr std::size_t kTail = 800;
  return all.size() > kTail ? "..." + all.substr(all.size() - kTail) : all;
}

}  // namespace

EmbeddedRedis::EmbeddedRedis(const std::string& dir, EmbeddedRedisOptions options) {
  std::string exe = find_executable(options.redis_server);
  if (exe.empty())
    throw StoreError(StoreError::Code::kInvalidArgument,
                     "store: embedded needs '" + options.redis_server +
                         "', which is not installed or not on PATH (Debian: apt-get install "
                         "redis-server), or point store.redis at an existing Redis");
  std::error_code ec;
  std::string abs_dir = std::filesystem::absolute(dir, ec).lexically_normal().string();
  if (!abs_dir.empty() && abs_dir.back() == '/') abs_dir.pop_back();
  socket_path_ = abs_dir + "/redis.sock";
  log_path_ = abs_dir + "/redis.log";
  if (socket_path_.size() >= sizeof(sockaddr_un::sun_path))
    throw StoreError(StoreError::Code::kInvalidArgument,
                     "the embedded redis socket path '" + socket_path_ + "' is longer than " +
                         std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                         " bytes; choose a shorter directory");
  std::filesystem::create_directories(abs_dir, ec);
  if (ec)
    throw StoreError(StoreError::Code::kLocalIo,
                     "cannot create the embedded redis directory '" + dir + "': " + ec.message());
  std::filesystem::remove(socket_path_, ec);

  std::vector<std::string> args = {
      exe,   "--port", "0",    "--unixsocket", socket_path_, "--unixsocketperm",
      "700", "--save", "",     "--appendonly", "no",         "--daemonize",
      "no",  "--dir",  abs_dir};
  if (options.maxmemory_bytes != 0) {
    args.push_back("--maxmemory");
    args.push_back(std::to_string(options.maxmemory_bytes));
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0)
    throw StoreError(StoreError::Code::kLocalIo,
                     "cannot open '" + log_path_ + "': " + std::strerror(errno));
  pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) {
    ::close(log_fd);
    throw StoreError(StoreError::Code::kLocalIo, std::string("fork: ") + std::strerror(errno));
  }
  if (pid_ == 0) {
    // Only async-signal-safe calls from here to exec.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) _exit(1);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(log_fd);

  RedisEndpoint endpoint;
  endpoint.unix_socket = true;
  endpoint.path = socket_path_;
  auto deadline = std::chrono::steady_clock::now() + options.startup_timeout;
  std::string last_error = "no answer yet";
  while (true) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw StoreError(StoreError::Code::kConnection,
                       "the embedded redis-server exited at start-up (status " +
                           std::to_string(status) + "); its log says: " + log_tail(log_path_));
    }
    try {
      RedisConnection conn(endpoint, std::chrono::milliseconds(500),
                           std::chrono::milliseconds(2000));
      if (conn.call({"PING"}).str() == "PONG") return;
    } catch (const StoreError& e) {
      last_error = e.what();
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      stop();
      throw StoreError(StoreError::Code::kConnection,
                       "the embedded redis-server did not answer PING within " +
                           std::to_string(options.startup_timeout.count()) + " ms (" + last_error +
                           "); its log says: " + log_tail(log_path_));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

EmbeddedRedis::~EmbeddedRedis() { stop(); }

void EmbeddedRedis::stop() noexcept {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
  std::error_code ec;
  std::filesystem::remove(socket_path_, ec);
}

}  // namespace clupy::store
