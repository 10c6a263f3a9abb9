// Running an installer: a shell command in a process group of its own, its stdout and stderr
// read line by line as it runs, killed (the whole group) when it outlives its timeout or when
// the caller cancels. Blocking: meant for a thread of its own, never an io_context thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace clupy::deps {

struct CommandResult {
  bool started = false;     // false: it could not be started (error says why)
  int exit_code = -1;       // when it exited
  int signal = 0;           // when a signal ended it
  bool timed_out = false;   // killed at its timeout
  bool cancelled = false;   // killed because the caller cancelled
  std::string last_line;    // the last non-empty line it printed
  std::string output_tail;  // its last few KiB of output
  std::string error;

  bool succeeded() const { return started && exit_code == 0 && signal == 0; }
  // "exit code 3", "killed by signal 9", "killed after its 10s timeout", for people.
  std::string describe() const;
};

struct CommandOptions {
  std::chrono::milliseconds timeout{600'000};
  // Called (on the calling thread) with each non-empty line of output as it arrives.
  std::function<void(const std::string& line)> on_line;
  // Called (on the calling thread) whenever no output came for a while (about 200 ms), so a
  // caller that rate-limits its reports can flush the last line.
  std::function<void()> on_idle;
  // Polled while the command runs: true kills it.
  const std::atomic<bool>* cancel = nullptr;
  std::vector<std::string> extra_environment;  // "NAME=value"
};

// Runs `/bin/sh -c command`. Never throws for the command's failure.
CommandResult run_shell_command(const std::string& command, const CommandOptions& options);

// Runs a program (argv[0] looked up on PATH) and collects its whole stdout; stderr is dropped.
// For quick queries (dpkg-query): no timeout beyond `timeout`.
CommandResult run_query(const std::vector<std::string>& argv, std::string& stdout_text,
                        std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Quotes `text` for /bin/sh (single quotes).
std::string shell_quote(const std::string& text);

}  // namespace clupy::deps
