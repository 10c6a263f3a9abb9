// A TCP relay that delays what it forwards: the test bed's link shaping (this kernel has no
// netem). It accepts on LISTEN, connects each accepted connection to TARGET, and forwards the
// bytes both ways, each chunk held until DELAY_US (plus a uniform jitter in [0, JITTER_US],
// seeded) after it was read, never reordered. Run it inside a host's network namespace
// (nsenter --net=...) so it sits on that host's link.
//   bed_delay_relay LISTEN_IP:PORT TARGET_IP:PORT DELAY_US [JITTER_US [SEED]]
// Prints "READY" once listening. Exits on SIGTERM/SIGKILL; a connection closes both ways when
// either side closes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

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

}  // namespace

int main(int argc, char** argv) {
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
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&listen_at), sizeof listen_at) != 0 ||
      ::listen(listener, 64) != 0) {
    std::perror("listen");
    return 1;
  }
  std::printf("READY\n");
  std::fflush(stdout);
  for (;;) {
    const int accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (accepted < 0) continue;
    std::thread([accepted, target, &shaping] { relay(accepted, target, shaping); }).detach();
  }
}
