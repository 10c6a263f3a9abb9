// clupy::progress and wait_all(..., show_progress): include/clupy/progress.hpp. Completions are
// learned through waiters (one notification per future, no polling of every future), counted
// per label (the task's function), and drawn by the waiting thread.
#include "clupy/progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>

namespace clupy::detail {

namespace {

using Clock = std::chrono::steady_clock;

// Collects the positions of futures as they complete.
class CompletionLog final : public Waiter {
 public:
  explicit CompletionLog(std::size_t expected) : expected_(expected) {
    completed_.reserve(std::min<std::size_t>(expected, 1 << 16));
  }
  void notify(std::size_t index) override {
    std::lock_guard lock(mu_);
    completed_.push_back(index);
    if (++count_ == expected_) all_.notify_all();
  }
  // Waits until every registered future completed or `until` passes; true in the first case.
  bool wait_until(Clock::time_point until) {
    std::unique_lock lock(mu_);
    auto all = [&] { return count_ >= expected_; };
    if (until == Clock::time_point::max()) {
      all_.wait(lock, all);
      return true;
    }
    return all_.wait_until(lock, until, all);
  }
  std::vector<std::size_t> take() {
    std::lock_guard lock(mu_);
    return std::exchange(completed_, {});
  }
  void expect(std::size_t expected) {
    std::lock_guard lock(mu_);
    expected_ = expected;
  }

 private:
  std::mutex mu_;
  std::condition_variable all_;
  std::vector<std::size_t> completed_;
  std::size_t count_ = 0;
  std::size_t expected_;
};

struct Group {
  std::string name;
  std::size_t total = 0;
  std::size_t done = 0;
  std::size_t failed = 0;
  std::deque<std::pair<Clock::time_point, std::size_t>> samples;  // (when, done), for the rate
  Clock::time_point finished{};                                   // when the last one completed
};

std::string duration_text(double seconds) {
  char text[32];
  if (seconds < 10)
    std::snprintf(text, sizeof text, "%.1fs", seconds);
  else if (seconds < 60)
    std::snprintf(text, sizeof text, "%.0fs", seconds);
  else if (seconds < 3600)
    std::snprintf(text, sizeof text, "%dm%02ds", static_cast<int>(seconds) / 60,
                  static_cast<int>(seconds) % 60);
  else
    std::snprintf(text, sizeof text, "%dh%02dm", static_cast<int>(seconds) / 3600,
                  static_cast<int>(seconds) / 60 % 60);
  return text;
}

std::string rate_text(double per_second) {
  char text[32];
  if (per_second >= 100)
    std::snprintf(text, sizeof text, "%.0f/s", per_second);
  else
    std::snprintf(text, sizeof text, "%.1f/s", per_second);
  return text;
}

class Display {
 public:
  Display(const ProgressOptions& options, bool terminal, Clock::time_point start)
      : options_(options), terminal_(terminal), start_(start) {}

  std::vector<Group>& groups() { return groups_; }

  void draw(Clock::time_point now, bool final) {
    for (auto& g : groups_) {
      g.samples.emplace_back(now, g.done);
      // The rate is measured over the last 10 s (or since the start).
      while (g.samples.size() > 2 && now - g.samples[1].first >= std::chrono::seconds(10))
        g.samples.pop_front();
    }
    std::vector<std::string> lines;
    for (const auto& g : groups_) lines.push_back(line(g, now, final));
    if (groups_.size() > 1) {
      Group all;
      all.name = options_.title.empty() ? "all" : options_.title;
      for (const auto& g : groups_) {
        all.total += g.total;
        all.done += g.done;
        all.failed += g.failed;
        all.finished = std::max(all.finished, g.finished);
      }
      all_samples_.emplace_back(now, all.done);
      while (all_samples_.size() > 2 && now - all_samples_[1].first >= std::chrono::seconds(10))
        all_samples_.pop_front();
      all.samples = all_samples_;
      lines.push_back(line(all, now, final));
    }
    std::string out;
    if (terminal_) {
      // Back to the first line of the previous frame, then each line cleared and rewritten.
      if (drawn_lines_ > 0) out += "\x1b[" + std::to_string(drawn_lines_) + "A";
      const unsigned width = terminal_width();
      for (auto& l : lines) {
        if (width > 1 && l.size() >= width) l.resize(width - 1);
        out += "\r\x1b[2K" + l + "\n";
      }
      drawn_lines_ = lines.size();
    } else {
      for (const auto& l : lines) out += "[progress] " + l + "\n";
    }
    std::fputs(out.c_str(), options_.output);
    std::fflush(options_.output);
  }

 private:
  unsigned terminal_width() const {
    winsize size{};
    if (::ioctl(::fileno(options_.output), TIOCGWINSZ, &size) == 0 && size.ws_col > 0)
      return size.ws_col;
    return 100;
  }

  std::string line(const Group& g, Clock::time_point now, bool final) const {
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double percent =
        g.total == 0 ? 100 : 100.0 * static_cast<double>(g.done) / static_cast<double>(g.total);
    double rate = 0;
    const bool complete = g.done == g.total;
    if (complete && g.total > 0) {
      const double took = std::chrono::duration<double>(g.finished - start_).count();
      rate = took > 0 ? static_cast<double>(g.total) / took : 0;
    } else if (g.samples.size() >= 2) {
      const double span =
          std::chrono::duration<double>(g.samples.back().first - g.samples.front().first).count();
      if (span > 0)
        rate = static_cast<double>(g.samples.back().second - g.samples.front().second) / span;
    }
    if (!complete && rate <= 0 && elapsed > 0 && g.done > 0)
      rate = static_cast<double>(g.done) / elapsed;
    char counts[96];
    std::snprintf(counts, sizeof counts, "%zu/%zu %3.0f%%", g.done, g.total, percent);
    std::string tail = " " + rate_text(rate);
    if (complete)
      tail += " in " + duration_text(std::chrono::duration<double>(g.finished - start_).count());
    else if (rate > 0)
      tail += " ETA " + duration_text(static_cast<double>(g.total - g.done) / rate);
    else
      tail += " ETA -";
    if (g.failed > 0) tail += ", " + std::to_string(g.failed) + " failed";
    if (!terminal_) {
      std::string text = g.name + ": " + counts + "," + tail;
      if (final && !complete) text += " (stopped waiting)";
      return text;
    }
    const std::size_t name_width = std::min<std::size_t>(name_width_(), 24);
    std::string name = g.name.substr(0, name_width);
    name.resize(name_width, ' ');
    const int cells = 24;
    const int filled =
        g.total == 0 ? cells
                     : static_cast<int>(static_cast<double>(cells) * static_cast<double>(g.done) /
                                        static_cast<double>(g.total));
    std::string bar = "[" + std::string(static_cast<std::size_t>(filled), '#') +
                      std::string(static_cast<std::size_t>(cells - filled), '.') + "]";
    return name + " " + bar + " " + counts + tail;
  }

  std::size_t name_width_() const {
    std::size_t width = 0;
    for (const auto& g : groups_) width = std::max(width, g.name.size());
    if (groups_.size() > 1)
      width = std::max(width, options_.title.empty() ? std::size_t{3} : options_.title.size());
    return width;
  }

  const ProgressOptions& options_;
  bool terminal_;
  Clock::time_point start_;
  std::vector<Group> groups_;
  std::deque<std::pair<Clock::time_point, std::size_t>> all_samples_;
  std::size_t drawn_lines_ = 0;
};

bool quiet_by_environment() {
  const char* value = std::getenv("CLUPY_PROGRESS");
  if (value == nullptr) return false;
  const std::string v = value;
  return v == "off" || v == "0" || v == "quiet" || v == "no";
}

}  // namespace

bool wait_with_progress(const std::vector<FutureStateBase*>& states,
                        std::chrono::steady_clock::time_point deadline,
                        const ProgressOptions& options) {
  if (options.quiet || options.output == nullptr || quiet_by_environment() || states.empty()) {
    for (FutureStateBase* s : states)
      if (!s->wait_until(deadline, WaitSpin::kNo)) return false;
    return true;
  }
  const Clock::time_point start = Clock::now();
  const bool terminal = options.terminal.value_or(::isatty(::fileno(options.output)) == 1);
  const std::chrono::milliseconds interval = options.interval.count() > 0
                                                 ? options.interval
                                                 : std::chrono::milliseconds(terminal ? 100 : 5000);
  Display display(options, terminal, start);
  auto& groups = display.groups();
  std::map<std::string, std::size_t> group_of_label;
  std::vector<std::uint32_t> group_of(states.size());
  for (std::size_t i = 0; i < states.size(); ++i) {
    std::string name = states[i]->label();
    // "simulate(unsigned long, int)" shows as "simulate"; a lambda's or an offset's name as is.
    if (const auto paren = name.find('(');
        paren != std::string::npos && paren > 0 && name.find("lambda") == std::string::npos)
      name.resize(paren);
    if (name.empty()) name = options.title.empty() ? "tasks" : options.title;
    auto [it, added] = group_of_label.emplace(name, groups.size());
    if (added) {
      groups.emplace_back();
      groups.back().name = name;
    }
    group_of[i] = static_cast<std::uint32_t>(it->second);
    ++groups[it->second].total;
  }
  if (groups.size() == 1 && !options.title.empty()) groups[0].name = options.title;

  CompletionLog log(states.size());
  std::vector<std::size_t> registered;
  registered.reserve(states.size());
  std::vector<std::size_t> already;
  for (std::size_t i = 0; i < states.size(); ++i) {
    if (states[i]->add_waiter(&log, i))
      registered.push_back(i);
    else
      already.push_back(i);
  }
  log.expect(registered.size());
  std::vector<bool> told(states.size(), false);  // notified: the state forgot the waiter itself
  auto count = [&](const std::vector<std::size_t>& completed, Clock::time_point now) {
    for (std::size_t i : completed) {
      told[i] = true;
      Group& g = groups[group_of[i]];
      ++g.done;
      if (states[i]->status() == FutureStateBase::Status::kFailed) ++g.failed;
      g.finished = now;
    }
  };
  count(already, start);

  bool all = false;
  Clock::time_point next_draw = start + interval;
  if (terminal) display.draw(start, false);
  for (;;) {
    all = log.wait_until(std::min(next_draw, deadline));
    const Clock::time_point now = Clock::now();
    count(log.take(), now);
    if (all || now >= deadline) break;
    if (now >= next_draw) {
      display.draw(now, false);
      next_draw = now + interval;
    }
  }
  // Only states that have not told the log still hold it (after a timeout); the others dropped
  // their waiters as they completed.
  count(log.take(), Clock::now());
  for (std::size_t i : registered)
    if (!told[i]) states[i]->remove_waiter(&log);
  count(log.take(), Clock::now());  // told between the last take and the removal
  display.draw(Clock::now(), true);
  return all;
}

}  // namespace clupy::detail
