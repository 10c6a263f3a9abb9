// Worker output as the client prints it: each line prefixed with where it came from,
// "(server task N) ". Output reaches the client in pieces cut wherever the server's reads of the
// worker's pipes happened to end, so a line may arrive in several pieces; they are joined here
// before the line is printed. Used on the runtime's I/O thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <tuple>

namespace clupy::client {

class WorkerOutput {
 public:
  // Receives finished text (whole prefixed lines) for stdout or stderr.
  using Sink = std::function<void(bool is_stderr, std::string_view text)>;
  // A line is printed in pieces only past this length, so a task that never ends its line
  // cannot grow the buffer without bound.
  static constexpr std::size_t kMaxPartialLine = 64 * 1024;

  explicit WorkerOutput(Sink sink) : sink_(std::move(sink)) {}
  ~WorkerOutput() { flush_all(); }
  WorkerOutput(const WorkerOutput&) = delete;
  WorkerOutput& operator=(const WorkerOutput&) = delete;

  // A piece of a task's output (task_id 0: output the server could not attribute).
  void add(const std::string& server_id, std::uint64_t task_id, bool is_stderr,
           std::string_view text);
  // The task has finished: its unfinished last line, if any, is printed now.
  void task_done(std::uint64_t task_id);
  // Prints every unfinished line (the connection ended, the runtime stops).
  void flush_all();

 private:
  using Key = std::tuple<std::uint64_t, bool, std::string>;  // task, stderr, server
  void print_partial(const Key& key, std::string& partial);
  static std::string prefix(const std::string& server_id, std::uint64_t task_id);

  Sink sink_;
  std::map<Key, std::string> partial_;  // the unfinished last line of each stream
};

}  // namespace clupy::client
