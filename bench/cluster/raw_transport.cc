// raw_transport: the physical floor under the cluster benchmarks. A client thread sends SIZE
// bytes over loopback TCP (TCP_NODELAY, like CluPy's connections), an echo thread sends them
// back, N times. No framing, no serialization, no scheduling: what any design must pay.
//
//   raw_transport pingpong N SIZE   round trips; p50/p99 in us (the floor for benchmark 2)
//   raw_transport bulk N SIZE       echo of SIZE-byte blocks; MB/s in + out (the floor for 7)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
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

int run(const std::string& mode, int n, std::size_t size) {
  int port = 0;
  const int listener = listen_loopback(port);
  std::thread echo([listener, size] {
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) return;
    set_nodelay(fd);
    std::vector<char> buffer(size);
    try {
      while (read_exactly(fd, buffer.data(), size)) write_all(fd, buffer.data(), size);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "echo: %s\n", e.what());
    }
    ::close(fd);
  });
  const int fd = connect_loopback(port);
  std::vector<char> out(size, 'p'), in(size);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(n));
  // A few unmeasured exchanges first, so connection set-up and first faults stay out.
  for (int i = 0; i < 10; ++i) {
    write_all(fd, out.data(), size);
    read_exactly(fd, in.data(), size);
  }
  const auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    write_all(fd, out.data(), size);
    if (!read_exactly(fd, in.data(), size)) throw std::runtime_error("echo closed early");
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  echo.join();
  ::close(listener);

  std::sort(us.begin(), us.end());
  auto at = [&](double q) {
    return us[std::min(us.size() - 1, static_cast<std::size_t>(q * us.size()))];
  };
  if (mode == "pingpong") {
    std::printf("RESULT round_trips=%d bytes=%zu p50_us=%.1f p99_us=%.1f\n", n, size, at(0.5),
                at(0.99));
  } else {
    std::printf("RESULT blocks=%d bytes=%zu seconds=%.3f mb_per_s=%.1f\n", n, size, took,
                2.0 * n * static_cast<double>(size) / 1e6 / took);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if ((mode != "pingpong" && mode != "bulk") || argc != 4) {
    std::fprintf(stderr, "usage: raw_transport pingpong|bulk N SIZE\n");
    return 2;
  }
  const int n = std::atoi(argv[2]);
  const long size = std::atol(argv[3]);
  if (n <= 0 || size <= 0) {
    std::fprintf(stderr, "raw_transport: N and SIZE must be positive\n");
    return 2;
  }
  try {
    return run(mode, n, static_cast<std::size_t>(size));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "raw_transport: %s\n", e.what());
    return 1;
  }
}
