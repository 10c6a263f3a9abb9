#include "client/worker_output.hpp"

namespace clupy::client {

std::string WorkerOutput::prefix(const std::string& server_id, std::uint64_t task_id) {
  // Like Ray's driver logs: each line of a worker's output says where it came from.
  return "(" + server_id + (task_id != 0 ? " task " + std::to_string(task_id) : "") + ") ";
}

void WorkerOutput::add(const std::string& server_id, std::uint64_t task_id, bool is_stderr,
                       std::string_view text) {
  if (text.empty()) return;
  Key key{task_id, is_stderr, server_id};
  auto found = partial_.find(key);
  std::string carried = found != partial_.end() ? std::move(found->second) : std::string();
  if (found != partial_.end()) partial_.erase(found);

  const std::string head = prefix(server_id, task_id);
  std::string out;
  std::size_t start = 0;
  for (std::size_t end = text.find('\n'); end != std::string_view::npos;
       end = text.find('\n', start)) {
    out += head;
    out += carried;
    carried.clear();
    out.append(text, start, end - start);
    out += '\n';
    start = end + 1;
  }
  carried.append(text, start);
  if (carried.size() >= kMaxPartialLine) {
    out += head;
    out += carried;
    out += '\n';
    carried.clear();
  }
  if (!carried.empty()) partial_.emplace(std::move(key), std::move(carried));
  if (!out.empty()) sink_(is_stderr, out);
}

void WorkerOutput::print_partial(const Key& key, std::string& partial) {
  sink_(std::get<1>(key), prefix(std::get<2>(key), std::get<0>(key)) + partial + "\n");
}

void WorkerOutput::task_done(std::uint64_t task_id) {
  if (partial_.empty()) return;
  for (auto it = partial_.lower_bound(Key{task_id, false, std::string()});
       it != partial_.end() && std::get<0>(it->first) == task_id;) {
    print_partial(it->first, it->second);
    it = partial_.erase(it);
  }
}

void WorkerOutput::flush_all() {
  for (auto& [key, partial] : partial_) print_partial(key, partial);
  partial_.clear();
}

}  // namespace clupy::client
