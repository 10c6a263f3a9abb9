// raw_transport: the physical floor under the cluster benchmarks. A client sends SIZE bytes, an
// echo sends them back, N times. No framing, no serialization, no scheduling: what any design
// must pay.
//
//   raw_transport pingpong N SIZE [direct|relay]   round trips; p50/p99 in us (floor for 2)
//   raw_transport bulk N SIZE [direct|relay]       SIZE-byte blocks; MB/s in + out (floor for 7)
//
// direct (the default): one loopback TCP hop (TCP_NODELAY, like CluPy's connections) between
// two threads of this process. relay: the hops a task takes, as separate processes: client
// -TCP-> relay ("master") -TCP-> relay ("server") -unix socketpair-> echo ("worker") and back,
// each relay forwarding whatever bytes arrive as soon as they arrive. So "overhead over the
// transport" can be read against the same number of processes, hops and wake-ups as a task.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const char* what) {
  throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

void set_nodelay(int fd) {
  int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) fail("setsockopt");
}

// Returns false at end of stream.
bool read_exactly(int fd, char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::read(fd, data, size);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("read");
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

// A listening socket on 127.0.0.1 with a kernel-chosen port.
int listen_loopback(int& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) fail("bind");
  if (::listen(fd, 1) != 0) fail("listen");
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) fail("getsockname");
  port = ntohs(address.sin_port);
  return fd;
}

int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) fail("connect");
  set_nodelay(fd);
  return fd;
}

// Echoes SIZE-byte blocks on fd until the peer closes it.
void echo_blocks(int fd, std::size_t size) {
  std::vector<char> buffer(size);
  while (read_exactly(fd, buffer.data(), size)) write_all(fd, buffer.data(), size);
}

// Forwards bytes between a and b, both ways, as they arrive, until either side closes.
void relay(int a, int b) {
  std::vector<char> buffer(1 << 20);
  pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      fail("poll");
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buffer.data(), buffer.size());
      if (n <= 0) return;
      write_all(fds[1 - i].fd, buffer.data(), static_cast<std::size_t>(n));
    }
  }
}

// A connected loopback TCP pair: {the dialling end, the accepted end}.
std::pair<int, int> tcp_pair() {
  int port = 0;
  const int listener = listen_loopback(port);
  const int dialled = connect_loopback(port);
  const int accepted = ::accept(listener, nullptr, nullptr);
  if (accepted < 0) fail("accept");
  set_nodelay(accepted);
  ::close(listener);
  return {dialled, accepted};
}

// Runs body in a child process in which every fd of fds but those in keep is closed.
pid_t fork_with(const std::vector<int>& fds, const std::vector<int>& keep,
                const std::function<void()>& body) {
  const pid_t pid = ::fork();
  if (pid < 0) fail("fork");
  if (pid > 0) return pid;
  int status = 0;
  try {
    for (int fd : fds)
      if (std::find(keep.begin(), keep.end(), fd) == keep.end()) ::close(fd);
    body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "raw_transport child: %s\n", e.what());
    status = 1;
  }
  ::_exit(status);
}

// The measured loop on the client's end fd, and the RESULT line.
void measure(const std::string& mode, const std::string& path, int fd, int n, std::size_t size) {
  std::vector<char> out(size, 'p'), in(size);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(n));
  // A few unmeasured exchanges first, so connection set-up and first faults stay out.
  for (int i = 0; i < 10; ++i) {
    write_all(fd, out.data(), size);
    if (!read_exactly(fd, in.data(), size)) throw std::runtime_error("echo closed early");
  }
  const auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    write_all(fd, out.data(), size);
    if (!read_exactly(fd, in.data(), size)) throw std::runtime_error("echo closed early");
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  if (in != out) throw std::runtime_error("the echo changed the bytes");

  std::sort(us.begin(), us.end());
  auto at = [&](double q) {
    return us[std::min(us.size() - 1, static_cast<std::size_t>(q * us.size()))];
  };
  if (mode == "pingpong") {
    std::printf("RESULT path=%s round_trips=%d bytes=%zu p50_us=%.1f p99_us=%.1f\n", path.c_str(),
                n, size, at(0.5), at(0.99));
  } else {
    std::printf("RESULT path=%s blocks=%d bytes=%zu seconds=%.3f mb_per_s=%.1f\n", path.c_str(), n,
                size, took, 2.0 * n * static_cast<double>(size) / 1e6 / took);
  }
}

int run_direct(const std::string& mode, int n, std::size_t size) {
  const auto [client, echo_end] = tcp_pair();
  std::thread echo([fd = echo_end, size] {
    try {
      echo_blocks(fd, size);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "echo: %s\n", e.what());
    }
    ::close(fd);
  });
  measure(mode, "direct", client, n, size);
  ::close(client);
  echo.join();
  return 0;
}

int run_relay(const std::string& mode, int n, std::size_t size) {
  const auto [client, master_in] = tcp_pair();
  const auto [master_out, server_in] = tcp_pair();
  int worker[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, worker) != 0) fail("socketpair");
  const std::vector<int> all = {client, master_in, master_out, server_in, worker[0], worker[1]};
  const std::vector<pid_t> children = {
      fork_with(all, {master_in, master_out}, [&] { relay(master_in, master_out); }),
      fork_with(all, {server_in, worker[0]}, [&] { relay(server_in, worker[0]); }),
      fork_with(all, {worker[1]}, [&] { echo_blocks(worker[1], size); })};
  for (int fd : all)
    if (fd != client) ::close(fd);
  // Closing the client's end ends the chain: each process sees end of stream and exits.
  const auto stop_children = [&] {
    ::close(client);
    bool clean = true;
    for (pid_t pid : children) {
      int status = 0;
      clean = ::waitpid(pid, &status, 0) == pid && status == 0 && clean;
    }
    return clean;
  };
  try {
    measure(mode, "relay", client, n, size);
  } catch (...) {
    stop_children();
    throw;
  }
  return stop_children() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const std::string path = argc > 4 ? argv[4] : "direct";
  if ((mode != "pingpong" && mode != "bulk") || (path != "direct" && path != "relay") || argc < 4 ||
      argc > 5) {
    std::fprintf(stderr, "usage: raw_transport pingpong|bulk N SIZE [direct|relay]\n");
    return 2;
  }
  const int n = std::atoi(argv[2]);
  const long size = std::atol(argv[3]);
  if (n <= 0 || size <= 0) {
    std::fprintf(stderr, "raw_transport: N and SIZE must be positive\n");
    return 2;
  }
  try {
    const auto bytes = static_cast<std::size_t>(size);
    return path == "relay" ? run_relay(mode, n, bytes) : run_direct(mode, n, bytes);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "raw_transport: %s\n", e.what());
    return 1;
  }
}
