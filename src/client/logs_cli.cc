#include "client/logs_cli.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "client/admin.hpp"
#include "clupy/cluster.hpp"
#include "clupy/errors.hpp"
#include "common/dial.hpp"

namespace clupy::client {

namespace {

constexpr const char* kUsage =
    "usage: clupy logs [JOB.]TASK [--master-url URL] [--token-file FILE] [--config FILE] "
    "[--json]\n"
    "  TASK is the task id a failure names (\"task 17 on server s1\"); JOB.TASK picks the job\n"
    "  (the dashboard shows both). Without JOB, the latest job with such a task is meant.\n";

common::asio::awaitable<wire::Envelope> ask_logs(common::DialOptions dial,
                                                 wire::LogsRequest request) {
  auto dialed = co_await common::dial_master(dial);
  wire::Envelope envelope;
  envelope.set_request_id(1);
  *envelope.mutable_logs_request() = std::move(request);
  dialed.connection->send(envelope);
  for (;;) {
    wire::Envelope message;
    try {
      message = co_await dialed.connection->read_frame();
    } catch (const common::ConnectionClosed& e) {
      throw ConnectionError(std::string("the master closed the connection: ") + e.what());
    }
    if (message.request_id() != 1) continue;
    dialed.connection->close("done");
    co_return message;
  }
}

// "17" or "3.17"; false when it is neither.
bool parse_task(const std::string& text, std::uint64_t& job, std::uint64_t& task) {
  const auto number = [](const std::string& digits, std::uint64_t& out) {
    if (digits.empty() || digits.size() > 19) return false;
    out = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return false;
      out = out * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return true;
  };
  const std::size_t dot = text.find('.');
  if (dot == std::string::npos) {
    job = 0;
    return number(text, task) && task != 0;
  }
  return number(text.substr(0, dot), job) && number(text.substr(dot + 1), task) && job != 0;
}

}  // namespace

int logs_command(const std::vector<std::string>& args) {
  ConnectOptions options;
  bool json = false;
  std::string task_text;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool has_value = i + 1 < args.size();
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--json") {
      json = true;
    } else if (arg == "--master-url" && has_value) {
      options.master_url = args[++i];
    } else if (arg == "--token-file" && has_value) {
      options.token_file = args[++i];
    } else if (arg == "--config" && has_value) {
      options.config_file = args[++i];
    } else if (!arg.starts_with("-") && task_text.empty()) {
      task_text = arg;
    } else {
      std::cerr << "clupy logs: unexpected '" << arg << "'\n" << kUsage;
      return 2;
    }
  }
  wire::LogsRequest request;
  std::uint64_t job = 0, task = 0;
  if (!parse_task(task_text, job, task)) {
    std::cerr << "clupy logs: expected a task id (17 or 3.17)"
              << (task_text.empty() ? "" : ", got '" + task_text + "'") << "\n"
              << kUsage;
    return 2;
  }
  request.set_job_id(job);
  request.set_task_id(task);
  try {
    common::asio::io_context io(1);
    auto result = common::asio::co_spawn(io, ask_logs(admin_dial_options(options), request),
                                         common::asio::use_future);
    io.run();
    const wire::Envelope reply = result.get();
    if (reply.has_error()) {
      std::cerr << "clupy logs: " << reply.error().message() << "\n";
      return 1;
    }
    if (!reply.has_logs_reply()) throw Error("the master answered LogsRequest unexpectedly");
    const wire::LogsReply& logs = reply.logs_reply();
    if (json) {
      nlohmann::json lines = nlohmann::json::array();
      for (const auto& line : logs.lines())
        lines.push_back({{"stderr", line.is_stderr()}, {"text", line.text()}});
      std::cout << nlohmann::json({{"job_id", logs.job_id()},
                                   {"task_id", logs.task_id()},
                                   {"truncated", logs.truncated()},
                                   {"lines", lines}})
                       .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                << "\n";
      return 0;
    }
    if (logs.truncated())
      std::cerr << "(earlier lines of task " << logs.job_id() << "." << logs.task_id()
                << " were dropped)\n";
    for (const auto& line : logs.lines())
      (line.is_stderr() ? std::cerr : std::cout) << line.text() << "\n";
    return 0;
  } catch (const Error& e) {
    std::cerr << "clupy logs: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace clupy::client
