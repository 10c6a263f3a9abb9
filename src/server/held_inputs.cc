// Held results on the server side (docs/protocol.md#held-results): keeping large outcomes,
// serving them to the master, and putting held inputs into the calls of the tasks run here.
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>

#include "clupy/detail/call.hpp"
#include "clupy/errors.hpp"
#include "common/log.hpp"
#include "common/result_fetch.hpp"
#include "common/url.hpp"
#include "server/server.hpp"

namespace clupy::server {

namespace {
auto log() { return common::logger("server"); }
}  // namespace

wire::TaskResult failed_result(std::uint64_t task_id, FailureKind kind, std::string message) {
  wire::TaskResult result;
  result.set_task_id(task_id);
  result.mutable_failure()->set_kind(static_cast<std::uint32_t>(kind));
  result.mutable_failure()->set_message(std::move(message));
  return result;
}

void ServerDaemon::start_data_port() {
  if (config_.data_port < 0) return;
  if (config_.tls.enabled) {
    // A server has no certificate of its own: with TLS, held results travel through the master.
    log()->info("TLS is on: no data port; held results are fetched through the master");
    return;
  }
  if (!token_ && !common::is_loopback_host(config_.data_bind)) {
    log()->warn("no cluster token: the data port listens only on a loopback data_bind");
    return;
  }
  DataPort::Limits limits;
  limits.max_frame_size = config_.max_frame_size;
  limits.handshake_timeout = config_.handshake_timeout;
  limits.max_pending_connections = static_cast<std::size_t>(config_.max_pending_connections);
  data_port_ = std::make_unique<DataPort>(
      io_, config_.data_bind, config_.data_port, token_, limits,
      [this](std::uint64_t id) { return held_->get(id); },
      [this](wire::PushedCall&& call, const auto& from) {
        take_pushed_call(std::move(call), from);
      });
  if (!config_.data_address.empty()) {
    data_address_ = config_.data_address;
    log()->info("data port: listening on {}:{}, announced as {}", config_.data_bind,
                data_port_->port(), data_address_);
    return;
  }
  std::string host = config_.data_bind;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(host, ec);
  if (!ec && address.is_unspecified()) {
    char name[256] = {};
    ::gethostname(name, sizeof name - 1);
    host = name;
  }
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  data_address_ = host + ":" + std::to_string(data_port_->port());
  log()->info("data port: held results are served on {}", data_address_);
}

void ServerDaemon::hold_if_large(wire::TaskResult& result) {
  auto it = hold_thresholds_.find(result.task_id());
  if (it == hold_thresholds_.end()) return;
  const std::uint64_t threshold = it->second;
  hold_thresholds_.erase(it);
  if (result.outcome().size() < threshold) return;
  try {
    if (!detail::parse_outcome_view(result.outcome()).ok) return;  // exceptions travel
  } catch (const std::exception&) {
    return;  // the master and client say what is wrong with it
  }
  const std::uint64_t size = result.outcome().size();
  const std::uint64_t id = held_->put(std::move(*result.mutable_outcome()));
  result.clear_outcome();
  wire::ResultRef* ref = result.mutable_held();
  ref->set_server_id(server_id_);
  ref->set_result_id(id);
  ref->set_size(size);
  ref->set_data_address(data_address_);
}

void ServerDaemon::answer_fetch(const wire::Envelope& message) {
  wire::Envelope reply;
  reply.set_request_id(message.request_id());
  const std::uint64_t id = message.fetch_result().result_id();
  if (auto outcome = held_->get(id)) {
    reply.mutable_result_bytes()->set_outcome(std::move(*outcome));
  } else {
    auto* failure = reply.mutable_result_bytes()->mutable_failure();
    failure->set_kind(static_cast<std::uint32_t>(FailureKind::kLost));
    failure->set_message("result " + std::to_string(id) + " is not held by server " + server_id_);
  }
  send_to_master(reply);
}

void ServerDaemon::run_assignment(wire::Assignment&& task) {
  const std::uint64_t threshold =
      task.hold_threshold() == 0 ? 0 : config_.result_threshold.value_or(task.hold_threshold());
  if (threshold > 0) hold_thresholds_[task.task_id()] = threshold;
  if (task.call_ticket() != 0) [[unlikely]] {
    await_pushed_call(std::move(task));
    return;
  }
  start_assignment(std::move(task));
}

void ServerDaemon::start_assignment(wire::Assignment&& task) {
  if (task.held_inputs_size() == 0) {
    pool_->run(std::move(task));
    return;
  }
  asio::co_spawn(io_, pull_inputs_then_run(std::move(task)), asio::detached);
}

asio::awaitable<void> ServerDaemon::pull_inputs_then_run(wire::Assignment task) {
  // Each input's outcome, read here or fetched from the server that holds it.
  std::vector<std::string> outcomes;
  outcomes.reserve(static_cast<std::size_t>(task.held_inputs_size()));
  std::string failure;
  for (const wire::HeldInput& input : task.held_inputs()) {
    const wire::ResultRef& ref = input.ref();
    if (ref.server_id() == server_id_) {
      if (auto outcome = held_->get(ref.result_id())) {
        ++inputs_read_locally_;
        outcomes.push_back(std::move(*outcome));
        continue;
      }
      failure = "its input task " + std::to_string(input.input_task_id()) +
                "'s result is no longer held here";
      break;
    }
    if (ref.data_address().empty()) {
      failure = "its input task " + std::to_string(input.input_task_id()) + "'s server " +
                ref.server_id() + " takes no data connections";
      break;
    }
    common::ResultFetch fetch;
    fetch.address = ref.data_address();
    fetch.result_id = ref.result_id();
    fetch.role = wire::ROLE_SERVER;
    fetch.token = token_;
    fetch.max_frame_size = config_.max_frame_size;
    try {
      outcomes.push_back(co_await common::fetch_held_result(fetch));
      input_bytes_pulled_ += outcomes.back().size();
      ++inputs_pulled_;
    } catch (const std::exception& e) {
      failure = "its input task " + std::to_string(input.input_task_id()) + "'s result, held by " +
                ref.server_id() + ", could not be fetched: " + e.what();
      break;
    }
  }
  if (stopping_ || !registered_) co_return;  // the master that assigned it is gone
  if (failure.empty()) {
    std::vector<detail::ArgumentFill> fills;
    try {
      for (int i = 0; i < task.held_inputs_size(); ++i) {
        const auto outcome = detail::parse_outcome_view(outcomes[static_cast<std::size_t>(i)]);
        fills.push_back(
            {task.held_inputs(i).position(), task.held_inputs(i).index(), outcome.result});
      }
      task.set_call(detail::splice_call_arguments(task.call(), fills));
      task.clear_held_inputs();
      pool_->run(std::move(task));
      co_return;
    } catch (const std::exception& e) {
      failure = std::string("cannot put its held inputs into the call: ") + e.what();
    }
  }
  ++input_pulls_failed_;
  log()->warn("task {}: {}", task.task_id(), failure);
  hold_thresholds_.erase(task.task_id());
  queue_result(failed_result(task.task_id(), FailureKind::kLost, failure));
}

}  // namespace clupy::server
