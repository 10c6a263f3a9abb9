// A TCP relay that delays what it forwards: the test bed's link shaping (this kernel has no
// netem). It accepts on LISTEN, connects each accepted connection to TARGET, and forwards the
// bytes both ways, each chunk held until DELAY_US (plus a uniform jitter in [0, JITTER_US],
// seeded) after it was read, never reordered. Run it inside a host's network namespace
// (nsenter --net=...) so it sits on that host's link.
//   clupy_testbed_relay LISTEN_IP:PORT TARGET_IP:PORT DELAY_US [JITTER_US [SEED]]
// Prints "READY" once listening. Exits on SIGTERM/SIGKILL; a connection closes both ways when
// either side closes.
//
// Two more modes measure what the relays themselves cost (bench/network.sh subtracts it):
//   clupy_testbed_relay --echo LISTEN_IP:PORT        sends back whatever arrives ("READY" printed)
//   clupy_testbed_relay --ping TARGET_IP:PORT N SIZE  N round trips of SIZE bytes, TCP_NODELAY;
//                                                     prints "RESULT p50_us=... p99_us=..."
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

sockaddr_in parse(const std::string& text) {
  sockaddr_in address{};
  const auto colon = text.rfind(':');
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(std::atoi(text.c_str() + colon + 1)));
  if (colon == std::string::npos ||
      ::inet_pton(AF_INET, text.substr(0, colon).c_str(), &address.sin_addr) != 1) {
    std::fprintf(stderr, "bad address %s (want IP:PORT)\n", text.c_str());
    std::exit(2);
  }
  return address;
}

struct Shaping {
  std::chrono::microseconds delay;
  std::chrono::microseconds jitter;
  std::mt19937_64 random;
  std::mutex random_mu;
  Clock::duration next() {
    if (jitter.count() == 0) return delay;
    std::lock_guard lock(random_mu);
    return delay + std::chrono::microseconds(
                       std::uniform_int_distribution<long>(0, jitter.count())(random));
  }
};

// One direction of one connection: a reader queues chunks with their release times, a writer
// sends each at its time.
class Pipe {
 public:
  Pipe(int from, int to, Shaping& shaping) : from_(from), to_(to), shaping_(shaping) {}

  void run() {
    std::thread writer([this] { write_loop(); });
    std::vector<char> buffer(256 * 1024);
    Clock::time_point last_release{};
    for (;;) {
      const ssize_t n = ::read(from_, buffer.data(), buffer.size());
      if (n <= 0) break;
      // Released in order: a chunk never overtakes the one before it.
      const auto release = std::max(Clock::now() + shaping_.next(), last_release);
      last_release = release;
      std::lock_guard lock(mu_);
      chunks_.push_back({release, std::string(buffer.data(), static_cast<std::size_t>(n))});
      cv_.notify_one();
    }
    {
      std::lock_guard lock(mu_);
      reader_done_ = true;
      cv_.notify_one();
    }
    writer.join();
    ::shutdown(to_, SHUT_WR);
  }

 private:
  struct Chunk {
    Clock::time_point release;
    std::string bytes;
  };

  void write_loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return !chunks_.empty() || reader_done_; });
      if (chunks_.empty()) return;
      const auto release = chunks_.front().release;
      if (Clock::now() < release) {
        cv_.wait_until(lock, release);
        continue;
      }
      Chunk chunk = std::move(chunks_.front());
      chunks_.pop_front();
      lock.unlock();
      std::size_t sent = 0;
      while (sent < chunk.bytes.size()) {
        const ssize_t n =
            ::send(to_, chunk.bytes.data() + sent, chunk.bytes.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) {
          ::shutdown(from_, SHUT_RDWR);  // the other side is gone: stop reading too
          lock.lock();
          chunks_.clear();
          return;
        }
        sent += static_cast<std::size_t>(n);
      }
      lock.lock();
    }
  }

  int from_, to_;
  Shaping& shaping_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Chunk> chunks_;
  bool reader_done_ = false;
};

void relay(int accepted, sockaddr_in target, Shaping& shaping) {
  const int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(upstream, reinterpret_cast<sockaddr*>(&target), sizeof target) != 0) {
    std::perror("connect to target");
    ::close(upstream);
    ::close(accepted);
    return;
  }
  const int one = 1;
  for (int fd : {accepted, upstream}) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  Pipe up(accepted, upstream, shaping), down(upstream, accepted, shaping);
  std::thread back([&] { down.run(); });
  up.run();
  back.join();
  ::close(accepted);
  ::close(upstream);
}

int listen_on(const sockaddr_in& address) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener, 64) != 0) {
    std::perror("listen");
    std::exit(1);
  }
  std::printf("READY\n");
  std::fflush(stdout);
  return listener;
}

int echo(const sockaddr_in& address) {
  const int listener = listen_on(address);
  for (;;) {
    const int accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (accepted < 0) continue;
    std::thread([accepted] {
      const int one = 1;
      ::setsockopt(accepted, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      char buffer[64 * 1024];
      for (;;) {
        const ssize_t n = ::read(accepted, buffer, sizeof buffer);
        if (n <= 0 || ::send(accepted, buffer, static_cast<std::size_t>(n), MSG_NOSIGNAL) != n) {
          break;
        }
      }
      ::close(accepted);
    }).detach();
  }
}

int ping(const sockaddr_in& target, int round_trips, std::size_t size) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof target) != 0) {
    std::perror("connect");
    return 1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::vector<char> bytes(size, 'x');
  std::vector<double> micros;
  for (int i = 0; i < round_trips; ++i) {
    const auto start = Clock::now();
    if (::send(fd, bytes.data(), size, MSG_NOSIGNAL) != static_cast<ssize_t>(size)) {
      std::perror("send");
      return 1;
    }
    for (std::size_t got = 0; got < size;) {
      const ssize_t n = ::read(fd, bytes.data() + got, size - got);
      if (n <= 0) {
        std::fprintf(stderr, "the echo closed the connection\n");
        return 1;
      }
      got += static_cast<std::size_t>(n);
    }
    micros.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  std::sort(micros.begin(), micros.end());
  const auto at = [&](double q) {
    return micros[static_cast<std::size_t>(q * (micros.size() - 1))];
  };
  std::printf("RESULT round_trips=%d p50_us=%.1f p99_us=%.1f min_us=%.1f\n", round_trips, at(0.5),
              at(0.99), micros.front());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A chunk's release wakes the writer at its time: the default 50 us timer slack would add up
  // to that much to every delayed hop.
  ::prctl(PR_SET_TIMERSLACK, 1UL);
  if (argc == 3 && std::string(argv[1]) == "--echo") return echo(parse(argv[2]));
  if (argc == 5 && std::string(argv[1]) == "--ping") {
    const int round_trips = std::atoi(argv[3]);
    const long size = std::atol(argv[4]);
    if (round_trips <= 0 || size <= 0) {
      std::fprintf(stderr, "--ping wants a positive count and size\n");
      return 2;
    }
    return ping(parse(argv[2]), round_trips, static_cast<std::size_t>(size));
  }
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s LISTEN_IP:PORT TARGET_IP:PORT DELAY_US [JITTER_US [SEED]]\n",
                 argv[0]);
    return 2;
  }
  const sockaddr_in listen_at = parse(argv[1]);
  const sockaddr_in target = parse(argv[2]);
  Shaping shaping{std::chrono::microseconds(std::atol(argv[3])),
                  std::chrono::microseconds(argc > 4 ? std::atol(argv[4]) : 0),
                  std::mt19937_64(argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 1),
                  {}};
  const int listener = listen_on(listen_at);
  for (;;) {
    const int accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (accepted < 0) continue;
    std::thread([accepted, target, &shaping] { relay(accepted, target, shaping); }).detach();
  }
}
