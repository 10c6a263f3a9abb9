#include "client/top.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>

#include "clupy/errors.hpp"
#include "common/config.hpp"

namespace clupy::client {

namespace {

volatile sig_atomic_t interrupted = 0;
void on_interrupt(int) { interrupted = 1; }

std::string duration_text(std::chrono::milliseconds d) {
  const long long s = std::max<long long>(0, d.count() / 1000);
  char text[32];
  if (s < 60)
    std::snprintf(text, sizeof text, "%llds", s);
  else if (s < 3600)
    std::snprintf(text, sizeof text, "%lldm%02llds", s / 60, s % 60);
  else if (s < 86400)
    std::snprintf(text, sizeof text, "%lldh%02lldm", s / 3600, s / 60 % 60);
  else
    std::snprintf(text, sizeof text, "%lldd%02lldh", s / 86400, s / 3600 % 24);
  return text;
}

std::string bar(std::uint64_t filled, std::uint64_t total, unsigned cells) {
  std::string out = "[";
  const unsigned full = total == 0 ? 0 : static_cast<unsigned>(filled * cells / total);
  out.append(full, '#');
  out.append(cells - full, '.');
  return out + "]";
}

std::string clock_text(std::chrono::system_clock::time_point t) {
  std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::localtime_r(&seconds, &tm);
  char text[16];
  std::strftime(text, sizeof text, "%H:%M:%S", &tm);
  return text;
}

unsigned terminal_width() {
  winsize size{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 0;
}

// Raw-ish terminal input while drawing, so `q` quits without Enter; restored on exit.
class KeyboardQuit {
 public:
  KeyboardQuit() {
    if (!::isatty(STDIN_FILENO) || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~KeyboardQuit() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  // Waits up to `timeout` for `q` (true) or the time to pass (false).
  bool wait_for_quit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!interrupted) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{active_ ? STDIN_FILENO : -1, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 200))) > 0) {
        char c = 0;
        if (::read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q')) return true;
      }
    }
    return true;
  }

 private:
  termios saved_{};
  bool active_ = false;
};

}  // namespace

std::string render_top_frame(const ClusterStatus& status, unsigned width) {
  std::string out;
  auto line = [&](std::string text) {
    if (width > 0 && text.size() > width) text.resize(width);
    out += text + "\n";
  };
  char text[512];
  std::uint64_t slots = 0, busy = 0;
  unsigned up = 0;
  std::map<std::string, std::vector<std::string>> reservations;
  for (const auto& s : status.servers) {
    if (s.connected) {
      slots += s.capacity;
      busy += std::min(s.busy_slots, s.capacity);
      ++up;
    }
    if (!s.reserved_by.empty()) reservations[s.reserved_by].push_back(s.server_id);
  }
  std::snprintf(text, sizeof text, "clupy top - master %s (libclupy %s, up %s)   %s",
                status.master_url.c_str(), status.master_version.c_str(),
                duration_text(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  status.master_time - status.master_started))
                    .c_str(),
                clock_text(status.master_time).c_str());
  line(text);
  std::snprintf(text, sizeof text,
                "servers %u up, %zu unreachable   slots %llu, busy %llu %s %3.0f%%", up,
                status.servers.size() - up, static_cast<unsigned long long>(slots),
                static_cast<unsigned long long>(busy), bar(busy, slots, 20).c_str(),
                slots == 0 ? 0.0 : 100.0 * static_cast<double>(busy) / static_cast<double>(slots));
  line(text);
  std::snprintf(text, sizeof text, "tasks   %llu queued, %llu running   clients %u",
                static_cast<unsigned long long>(status.queued_tasks),
                static_cast<unsigned long long>(status.running_tasks), status.clients);
  line(text);
  for (const auto& [client, servers] : reservations) {
    std::string names;
    for (const auto& id : servers) names += (names.empty() ? "" : " ") + id;
    line("  client " + client + " holds " + std::to_string(servers.size()) +
         " server(s): " + names);
  }
  if (!status.dependency_manifest_error.empty())
    line("dependency manifest NOT reloaded: " + status.dependency_manifest_error);
  line("");
  std::snprintf(text, sizeof text, "%-18s %-24s %10s %-12s %9s  %-11s %-14s %s", "SERVER",
                "HOST/PID", "BUSY/SLOTS", "LOAD", "HEARTBEAT", "STATE", "DEPENDENCIES", "LABELS");
  line(text);
  std::vector<const ServerStatus*> rows;
  for (const auto& s : status.servers) rows.push_back(&s);
  std::sort(rows.begin(), rows.end(), [](const ServerStatus* a, const ServerStatus* b) {
    return a->server_id < b->server_id;
  });
  for (const ServerStatus* s : rows) {
    std::string labels;
    for (const auto& [k, v] : s->labels) labels += (labels.empty() ? "" : ",") + k + "=" + v;
    const std::string state = !s->connected            ? "unreachable"
                              : s->reserved_by.empty() ? "up"
                                                       : "reserved";
    std::snprintf(text, sizeof text, "%-18s %-24s %5u/%-4u %-12s %9s  %-11s %-14s %s",
                  s->server_id.c_str(), (s->hostname + "/" + std::to_string(s->pid)).c_str(),
                  s->busy_slots, s->capacity, bar(s->busy_slots, s->capacity, 10).c_str(),
                  duration_text(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    status.master_time - s->last_heartbeat))
                      .c_str(),
                  state.c_str(), s->dependency_state.empty() ? "-" : s->dependency_state.c_str(),
                  labels.c_str());
    line(text);
  }
  if (status.servers.empty()) line("(no server registered)");
  return out;
}

int top_command(const std::vector<std::string>& args) {
  ConnectOptions options;
  std::chrono::milliseconds interval(2000);
  bool once = false;
  long frames = 0;  // 0: until interrupted
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--once") {
      once = true;
      continue;
    }
    if (flag == "-h" || flag == "--help") {
      std::cout << "usage: clupy top [--master-url URL] [--token-file PATH] [--config PATH]\n"
                   "                 [--interval 2s] [--frames N] [--once]\n"
                   "The cluster's servers, busy slots, queued and running tasks and clients,\n"
                   "redrawn every interval until Ctrl-C or q (or N frames); --once prints one\n"
                   "frame without escape codes.\n"
                   "URL: clupy://host:port, or zk://hosts/chroot for standby masters.\n";
      return 0;
    }
    if (i + 1 >= args.size()) {
      std::cerr << "clupy top: " << flag << " needs a value (or unknown flag; see --help)\n";
      return 2;
    }
    const std::string& value = args[++i];
    if (flag == "--master-url") {
      options.master_url = value;
    } else if (flag == "--token-file") {
      options.token_file = value;
    } else if (flag == "--config") {
      options.config_file = value;
    } else if (flag == "--frames") {
      frames = std::atol(value.c_str());
      if (frames <= 0) {
        std::cerr << "clupy top: --frames needs a positive number\n";
        return 2;
      }
    } else if (flag == "--interval") {
      try {
        interval = common::parse_duration(value);
      } catch (const ConfigError& e) {
        std::cerr << "clupy top: --interval: " << e.what() << "\n";
        return 2;
      }
      interval = std::max(interval, std::chrono::milliseconds(100));
    } else {
      std::cerr << "clupy top: unknown flag " << flag << " (see --help)\n";
      return 2;
    }
  }
  const bool redraw = !once && ::isatty(STDOUT_FILENO);
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  std::optional<KeyboardQuit> keyboard;
  if (redraw) keyboard.emplace();
  if (redraw) std::fputs("\x1b[?25l", stdout);  // hide the cursor while drawing
  int code = 0;
  bool first = true;
  while (!interrupted) {
    std::string frame;
    try {
      frame = render_top_frame(cluster_status(options), redraw ? terminal_width() : 0);
    } catch (const Error& e) {
      // While redrawing, a master that goes away is shown and asked again; once, it is an error.
      if (!redraw) {
        std::cerr << "clupy top: " << e.what() << "\n";
        code = 1;
        break;
      }
      frame = std::string("clupy top - cannot reach the master: ") + e.what() + "\n";
    }
    if (redraw)
      std::fputs("\x1b[H\x1b[2J", stdout);  // home, clear
    else if (!first)
      std::fputs("\n", stdout);
    std::fputs(frame.c_str(), stdout);
    std::fflush(stdout);
    first = false;
    if (once || (frames > 0 && --frames == 0)) break;
    if (keyboard ? keyboard->wait_for_quit(interval) : false) break;
    if (!keyboard) {
      const auto deadline = std::chrono::steady_clock::now() + interval;
      while (!interrupted && std::chrono::steady_clock::now() < deadline) ::usleep(50'000);
    }
  }
  if (redraw) std::fputs("\x1b[?25h\n", stdout);
  std::fflush(stdout);
  return code;
}

}  // namespace clupy::client
