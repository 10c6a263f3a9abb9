// heartbeat_sim: many simulated servers in one process, each on its own connection speaking the
// real protocol (handshake with the token, RegisterServer, Heartbeat every interval), to measure
// what the registry and heartbeats cost the master (benchmark 6). It samples the master's CPU
// time from /proc/PID/stat: first while idle (the baseline), then with every server registered.
//
//   heartbeat_sim MASTER_URL TOKEN_FILE MASTER_PID SERVERS INTERVAL_MS MEASURE_S
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "clupy.pb.h"
#include "common/auth.hpp"
#include "common/dial.hpp"
#include "common/url.hpp"
#include "common/version.hpp"

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
// A simulated server gives up after this many refused dials (about a minute of retries).
constexpr int kMaxDials = 300;

struct Settings {
  clupy::common::MasterAddress master;
  std::string token;
  int servers = 1000;
  std::chrono::milliseconds interval{1000};
};

struct Counters {
  int registered = 0;
  int heartbeats = 0;
  int errors = 0;
  int closed = 0;
  int redials = 0;  // dials the master refused (max_pending_connections) and that were retried
};

// utime + stime of a process, in seconds.
double cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces) start after the last ')'.
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long long utime = 0, stime = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14) utime = std::atoll(field.c_str());
    if (i == 15) {
      stime = std::atoll(field.c_str());
      break;
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

asio::awaitable<void> simulated_server(int index, const Settings& settings, Counters& counters,
                                       std::chrono::milliseconds phase) {
  clupy::common::DialOptions options;
  options.address = settings.master;
  options.role = clupy::wire::ROLE_SERVER;
  options.token = settings.token;
  options.timeout = std::chrono::seconds(60);
  // As a real server does (failure_retry_interval): a master at its max_pending_connections
  // closes further connections at once, and they dial again a little later.
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::minstd_rand jitter(static_cast<unsigned>(index));
  std::shared_ptr<clupy::common::Connection> connection;
  for (int attempt = 1; !connection; ++attempt) {
    try {
      connection = (co_await clupy::common::dial_master(options)).connection;
    } catch (const std::exception&) {
      if (attempt == kMaxDials) throw;
    }
    if (connection) break;
    ++counters.redials;
    timer.expires_after(std::chrono::milliseconds(100 + jitter() % 200));
    co_await timer.async_wait(asio::use_awaitable);
  }
  auto open = std::make_shared<bool>(true);
  connection->start(
      [&counters](clupy::wire::Envelope& message) {
        if (message.has_server_registered()) ++counters.registered;
        if (message.has_error()) {
          ++counters.errors;
          std::fprintf(stderr, "master: %s\n", message.error().message().c_str());
        }
      },
      [&counters, open](const std::string& reason) {
        *open = false;
        ++counters.closed;
        std::fprintf(stderr, "connection closed: %s\n", reason.c_str());
      });

  const std::string id = "sim-" + std::to_string(index);
  clupy::wire::Envelope hello;
  auto* description = hello.mutable_register_server()->mutable_server();
  description->set_server_id(id);
  description->set_hostname("heartbeat-sim");
  description->set_address("heartbeat-sim");
  description->set_capacity(2);
  (*description->mutable_labels())["simulated"] = "1";
  clupy::common::fill_build_info(*description->mutable_build());
  description->set_pid(static_cast<std::uint32_t>(::getpid()));
  connection->send(hello);

  // Real servers start at random moments; spread the beats the same way.
  timer.expires_after(phase);
  while (*open) {
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!*open) break;
    clupy::wire::Envelope beat;
    beat.mutable_heartbeat()->set_server_id(id);
    beat.mutable_heartbeat()->set_busy_slots(0);
    connection->send(beat);
    ++counters.heartbeats;
    timer.expires_at(timer.expiry() + settings.interval);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr,
                 "usage: heartbeat_sim MASTER_URL TOKEN_FILE MASTER_PID SERVERS INTERVAL_MS "
                 "MEASURE_S\n");
    return 2;
  }
  try {
    Settings settings;
    settings.master = clupy::common::parse_master_url(argv[1]);
    settings.token = clupy::common::read_token_file(argv[2]);
    const int master_pid = std::atoi(argv[3]);
    settings.servers = std::atoi(argv[4]);
    settings.interval = std::chrono::milliseconds(std::atoi(argv[5]));
    const double measure = std::atof(argv[6]);

    // Baseline: the idle master over the same window.
    const double idle_cpu0 = cpu_seconds(master_pid);
    const auto idle_t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(measure));
    const double idle_cpu = (cpu_seconds(master_pid) - idle_cpu0) /
                            std::chrono::duration<double>(Clock::now() - idle_t0).count();

    asio::io_context io(1);
    Counters counters;
    std::mt19937 random(42);
    std::uniform_int_distribution<long> phase(0, settings.interval.count() - 1);
    for (int i = 0; i < settings.servers; ++i) {
      asio::co_spawn(
          io, simulated_server(i, settings, counters, std::chrono::milliseconds(phase(random))),
          [](std::exception_ptr e) {
            if (!e) return;
            try {
              std::rethrow_exception(e);
            } catch (const std::exception& error) {
              std::fprintf(stderr, "simulated server: %s\n", error.what());
            }
          });
    }
    // Registration (handshakes included) first; the measurement starts one interval after the
    // last server registered, when every server is in its steady heartbeat cycle.
    const auto register_start = Clock::now();
    while (counters.registered < settings.servers && counters.closed == 0 &&
           Clock::now() - register_start < std::chrono::seconds(120))
      io.run_for(std::chrono::milliseconds(50));
    const double register_s = std::chrono::duration<double>(Clock::now() - register_start).count();
    if (counters.registered < settings.servers) {
      std::fprintf(stderr, "only %d of %d servers registered\n", counters.registered,
                   settings.servers);
      return 1;
    }
    io.run_for(settings.interval);
    const int beats0 = counters.heartbeats;
    const double cpu0 = cpu_seconds(master_pid);
    const double self0 = cpu_seconds(::getpid());
    const auto t0 = Clock::now();
    io.run_for(std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::duration<double>(measure)));
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    const double busy = (cpu_seconds(master_pid) - cpu0) / elapsed;
    const double self = (cpu_seconds(::getpid()) - self0) / elapsed;
    const int beats = counters.heartbeats - beats0;
    if (counters.errors > 0 || counters.closed > 0) {
      std::fprintf(stderr, "%d errors, %d connections closed during the measurement\n",
                   counters.errors, counters.closed);
      return 1;
    }
    std::printf(
        "RESULT servers=%d interval_ms=%lld register_s=%.3f heartbeats_per_s=%.1f "
        "master_cpu_percent=%.3f master_idle_cpu_percent=%.3f simulator_cpu_percent=%.2f "
        "redials=%d\n",
        settings.servers, static_cast<long long>(settings.interval.count()), register_s,
        beats / elapsed, 100.0 * busy, 100.0 * idle_cpu, 100.0 * self, counters.redials);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "heartbeat_sim: %s\n", e.what());
    return 1;
  }
}
