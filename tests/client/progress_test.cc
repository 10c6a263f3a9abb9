// clupy::progress and wait_all(..., show_progress) drawing to a pseudo-terminal (opened here)
// and to a pipe, with futures completed by another thread as results would be.
#include "clupy/progress.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <regex>
#include <thread>

#include "clupy/parallel.hpp"

namespace clupy {
namespace {

using namespace std::chrono_literals;

// Futures of `count` tasks labelled `label`, completed by complete().
struct Tasks {
  std::vector<Future<int>> futures;
  std::vector<std::shared_ptr<detail::FutureState<int>>> states;
  Tasks(const std::string& label, int count) {
    for (int i = 0; i < count; ++i) {
      auto pending = detail::make_pending_future<int>();
      pending.state->set_label(detail::intern_label(label));
      futures.push_back(pending.future);
      states.push_back(detail::FutureAccess::state(pending.future));
    }
  }
  void complete(int i, bool fail = false) {
    auto& s = states[static_cast<std::size_t>(i)];
    if (fail) {
      Failure failure;
      failure.kind = FailureKind::kException;
      failure.message = "boom";
      s->complete_with_failure(failure);
    } else {
      s->complete_with_value(i);
    }
  }
};

// Reads everything written to `fd` until the writer side closes (or 10 s pass).
class Reader {
 public:
  explicit Reader(int fd) : fd_(fd), thread_([this] { run(); }) {}
  ~Reader() {
    if (thread_.joinable()) thread_.join();
  }
  std::string finish() {
    thread_.join();
    return text_;
  }

 private:
  void run() {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n > 0) {
        text_.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EINTR && errno != EAGAIN)) break;  // EIO: the pty's slave closed
    }
  }
  int fd_;
  std::string text_;
  std::thread thread_;
};

struct Pty {
  int master = -1;
  FILE* slave = nullptr;
  Pty() {
    int slave_fd = -1;
    winsize size{};
    size.ws_col = 120;
    size.ws_row = 40;
    if (::openpty(&master, &slave_fd, nullptr, nullptr, &size) != 0) return;
    slave = ::fdopen(slave_fd, "w");
  }
  ~Pty() {
    if (slave) std::fclose(slave);
    if (master >= 0) ::close(master);
  }
  void close_slave() {
    std::fclose(slave);
    slave = nullptr;
  }
};

TEST(ProgressTest, OnATerminalABarIsRedrawnInPlaceWithRateEtaAndFailures) {
  Pty pty;
  ASSERT_NE(pty.slave, nullptr) << "openpty failed";
  ASSERT_TRUE(::isatty(::fileno(pty.slave)));
  Reader reader(pty.master);
  Tasks tasks("square", 20);
  std::thread results([&] {
    for (int i = 0; i < 20; ++i) {
      std::this_thread::sleep_for(15ms);
      tasks.complete(i, i % 10 == 3);
    }
  });
  ProgressOptions options;
  options.output = pty.slave;
  options.interval = 50ms;
  progress(tasks.futures, options);
  results.join();
  for (auto& f : tasks.futures) EXPECT_TRUE(f.completed());
  pty.close_slave();
  const std::string out = reader.finish();
  // Each frame clears its line and redraws it; later frames first move back up.
  EXPECT_NE(out.find("\r\x1b[2Ksquare [....."), std::string::npos) << out;
  EXPECT_NE(out.find("\x1b[1A"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(square \[#+\.+\] \d+/20 +\d+% [\d.]+/s ETA )")))
      << out;
  // The last frame: complete, with the failures counted.
  EXPECT_TRUE(std::regex_search(
      out, std::regex(R"(square \[#{24}\] 20/20 100% [\d.]+/s in [\d.]+s, 2 failed\r?\n$)")))
      << out;
}

TEST(ProgressTest, SeveralFunctionsGetALineEachAndATotal) {
  Pty pty;
  ASSERT_NE(pty.slave, nullptr);
  Reader reader(pty.master);
  Tasks squares("square", 10), cubes("cube", 30);
  std::vector<Future<int>> all = squares.futures;
  all.insert(all.end(), cubes.futures.begin(), cubes.futures.end());
  std::thread results([&] {
    for (int i = 0; i < 30; ++i) {
      std::this_thread::sleep_for(10ms);
      if (i < 10) squares.complete(i);
      cubes.complete(i, i == 7);
    }
  });
  ProgressOptions options;
  options.output = pty.slave;
  options.interval = 40ms;
  options.title = "sweep";
  EXPECT_TRUE(wait_all(all, 30s, ShowProgress{options}));
  results.join();
  pty.close_slave();
  const std::string out = reader.finish();
  EXPECT_NE(out.find("\x1b[3A"), std::string::npos) << "three lines redrawn together: " << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(square \[#{24}\] 10/10 100%)"))) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(cube   \[#{24}\] 30/30 100% .*, 1 failed)")))
      << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(sweep  \[#{24}\] 40/40 100% .*, 1 failed)")))
      << out;
}

TEST(ProgressTest, IntoAPipeItWritesPlainLinesAndAFinalOne) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  FILE* writer = ::fdopen(fds[1], "w");
  Reader reader(fds[0]);
  Tasks tasks("square", 10);
  std::thread results([&] {
    for (int i = 0; i < 10; ++i) {
      std::this_thread::sleep_for(30ms);
      tasks.complete(i, i == 9);
    }
  });
  ProgressOptions options;
  options.output = writer;
  options.interval = 100ms;
  const auto start = std::chrono::steady_clock::now();
  progress(tasks.futures, options);
  const auto waited = std::chrono::steady_clock::now() - start;
  results.join();
  std::fclose(writer);
  const std::string out = reader.finish();
  ::close(fds[0]);
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << "no escape codes in a pipe: " << out;
  EXPECT_TRUE(
      std::regex_search(out, std::regex(R"(^\[progress\] square: \d/10 +\d+%, [\d.]+/s ETA )")))
      << out;
  EXPECT_TRUE(std::regex_search(
      out, std::regex(R"(\n\[progress\] square: 10/10 100%, [\d.]+/s in [\d.]+s, 1 failed\n$)")))
      << out;
  // A line per interval while waiting (about 300 ms), not one per result.
  const auto lines = std::count(out.begin(), out.end(), '\n');
  EXPECT_GE(lines, 2) << out;
  EXPECT_LE(lines, waited / 100ms + 2) << out;
}

TEST(ProgressTest, ATimeoutStopsTheDisplayAndSaysSo) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  FILE* writer = ::fdopen(fds[1], "w");
  Reader reader(fds[0]);
  Tasks tasks("slow", 4);
  tasks.complete(0);
  ProgressOptions options;
  options.output = writer;
  EXPECT_FALSE(wait_all(tasks.futures, 200ms, ShowProgress{options}));
  std::fclose(writer);
  const std::string out = reader.finish();
  ::close(fds[0]);
  EXPECT_EQ(out, std::string("[progress] slow: 1/4  25%, ") + out.substr(out.find(", ") + 2));
  EXPECT_NE(out.find("(stopped waiting)\n"), std::string::npos) << out;
}

TEST(ProgressTest, QuietDrawsNothing) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  FILE* writer = ::fdopen(fds[1], "w");
  Tasks tasks("square", 3);
  for (int i = 0; i < 3; ++i) tasks.complete(i);
  ProgressOptions options;
  options.output = writer;
  options.quiet = true;
  progress(tasks.futures, options);
  options.quiet = false;
  ::setenv("CLUPY_PROGRESS", "off", 1);
  EXPECT_TRUE(wait_all(tasks.futures, 1s, ShowProgress{options}));
  ::unsetenv("CLUPY_PROGRESS");
  std::fflush(writer);
  char c;
  EXPECT_EQ(::read(fds[0], &c, 1), -1) << "something was drawn";
  std::fclose(writer);
  ::close(fds[0]);
  // Not quiet: the same futures give one line.
  ASSERT_EQ(::pipe(fds), 0);
  writer = ::fdopen(fds[1], "w");
  Reader reader(fds[0]);
  options.output = writer;
  progress(tasks.futures, options);
  std::fclose(writer);
  EXPECT_NE(reader.finish().find("square: 3/3 100%"), std::string::npos);
  ::close(fds[0]);
}

}  // namespace
}  // namespace clupy
