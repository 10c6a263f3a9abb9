// A private redis-server for `store: embedded`: a child process listening only on a unix socket
// in a directory of the owner's choosing, with persistence off. The master owns one.
//
// The child gets SIGTERM if the thread that started it exits (PR_SET_PDEATHSIG), so construct it
// on a thread that lives as long as the master (the main thread). Not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace clupy::store {

struct EmbeddedRedisOptions {
  // The executable: a path, or a name looked up on PATH.
  std::string redis_server = "redis-server";
  std::chrono::milliseconds startup_timeout{10000};
  // Passed as --maxmemory when not 0 (Redis then refuses writes past it: the janitor's budget
  // should be lower).
  std::uint64_t maxmemory_bytes = 0;
};

class EmbeddedRedis {
 public:
  // Starts redis-server with its socket, log and working files in `dir` (created if needed) and
  // waits until it answers PING. Throws StoreError: kInvalidArgument when redis-server is not
  // installed or the socket path is too long, kConnection when it exits or does not answer in
  // time (the message quotes the end of its log).
  explicit EmbeddedRedis(const std::string& dir, EmbeddedRedisOptions options = {});
  // stop().
  ~EmbeddedRedis();
  EmbeddedRedis(const EmbeddedRedis&) = delete;
  EmbeddedRedis& operator=(const EmbeddedRedis&) = delete;

  // SIGTERM, then SIGKILL after 5 s; reaps the child. Idempotent.
  void stop() noexcept;

  // unix:///<dir>/redis.sock, for StoreOptions::redis_url.
  std::string url() const { return "unix://" + socket_path_; }
  const std::string& socket_path() const noexcept { return socket_path_; }
  const std::string& log_path() const noexcept { return log_path_; }
  pid_t pid() const noexcept { return pid_; }

 private:
  std::string socket_path_;
  std::string log_path_;
  pid_t pid_ = -1;
};

}  // namespace clupy::store
