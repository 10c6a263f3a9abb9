// Held results on the client side (protocol 1.4, docs/protocol.md#held-results): a task's
// result stayed on the server that made it; the program's Future gets its bytes straight from
// that server (or through the master when the server cannot be reached), and the server frees
// it once the program holds no Future of it and no unsent task names it.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <filesystem>

#include "client/runtime.hpp"
#include "clupy/detail/call.hpp"
#include "common/dial.hpp"
#include "common/log.hpp"
#include "common/test_hooks.hpp"
#include "common/url.hpp"

namespace clupy::client {

namespace {
auto log() { return common::logger("client"); }
// Connecting to a data port and its handshake: a peer that does not answer within this goes
// through the master instead (well within a server's push_timeout, 30 s by default).
constexpr auto kDataDialTimeout = std::chrono::seconds(5);
// A data port that could not be reached is not dialled again for this long: fetches and pushes
// for its server go through the master at once instead of waiting kDataDialTimeout each time.
constexpr auto kUnreachableDataPortPause = std::chrono::seconds(30);
}  // namespace

void Runtime::complete_held(Completion& completion) {
  const std::uint64_t id = completion.result.task_id();
  auto hook = [this, id] {
    std::lock_guard lock(mu_);
    release_if_unobserved(id);
  };
  completion.state->set_unobserved_hook(hook);
  completion.state->set_dropped_hook(hook);
  if (!completion.state->observed()) {
    // No Future of it is left (the release crossed its result): nothing to fetch.
    if (!pushed_outcomes_.empty()) pushed_outcomes_.erase(id);
    hook();
    Failure f;
    f.kind = FailureKind::kCancelled;
    f.task_id = id;
    f.function = completion.function_name;
    f.message = "its value was not brought to this program: no Future of it was left";
    completion.state->complete_with_failure(std::move(f));
    return;
  }
  if (completion.result.held().pushed() && complete_pushed(completion)) return;
  // A copy: the caller still wakes the batch's waiters through `completion`.
  asio::co_spawn(io_, fetch_held(completion), asio::detached);
}

asio::awaitable<void> Runtime::wait_for_test_gate(const std::string& gate) {
  if (gate.empty()) co_return;
  asio::steady_timer pause(io_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!stopped_ && !std::filesystem::exists(gate) &&
         std::chrono::steady_clock::now() < deadline) {
    pause.expires_after(std::chrono::milliseconds(20));
    boost::system::error_code ignored;
    co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
}

asio::awaitable<void> Runtime::fetch_held(Completion completion) {
  // Test only (tests/integration/lineage_test.cc): fetch once this file exists, so that a test
  // can lose the holding server between a held result's arrival and its fetch.
  co_await wait_for_test_gate(common::test_hooks().held_fetch_gate);
  const wire::ResultRef& ref = completion.result.held();
  if (ref.data_address().empty()) {
    fetch_held_through_master(std::move(completion),
                              "server " + ref.server_id() + " takes no data connections");
    co_return;
  }
  if (const std::string why = data_port_unreachable(ref.data_address()); !why.empty()) {
    fetch_held_through_master(std::move(completion), why);
    co_return;
  }
  const std::shared_ptr<DataLink> link = data_link(ref.data_address());
  if (link->connection)
    send_fetch(*link, std::move(completion));
  else
    link->queued.push_back(std::move(completion));  // the dial under way sends it
}

std::shared_ptr<Runtime::DataLink> Runtime::data_link(const std::string& address) {
  std::shared_ptr<DataLink>& slot = data_links_[address];
  if (slot) return slot;
  slot = std::make_shared<DataLink>();
  slot->dialing = true;
  asio::co_spawn(io_, dial_data_link(address, slot), asio::detached);
  return slot;
}

asio::awaitable<void> Runtime::dial_data_link(std::string address, std::shared_ptr<DataLink> link) {
  common::DialOptions options;
  options.role = wire::ROLE_CLIENT;
  options.token = dial_options_.token;
  options.max_frame_size = max_frame_size_;
  options.timeout = kDataDialTimeout;
  std::string why;
  try {
    options.address = common::parse_master_url(address);
    common::Dialed dialed = co_await common::dial_master(options);
    link->connection = dialed.connection;
  } catch (const std::exception& e) {
    why = e.what();
  }
  link->dialing = false;
  if (!link->connection) {
    if (auto it = data_links_.find(address); it != data_links_.end() && it->second == link)
      data_links_.erase(it);
    unreachable_data_ports_[address] =
        UnreachableDataPort{std::chrono::steady_clock::now() + kUnreachableDataPortPause, why};
    log()->info(
        "data port {} cannot be reached ({}); its server's fetches and pushes go "
        "through the master for {} s",
        address, why, kUnreachableDataPortPause.count());
    for (auto& queued : link->queued) fetch_held_through_master(std::move(queued), why);
    link->queued.clear();
    for (const auto& [ticket, task_id] : link->queued_pushes) push_through_master(ticket, task_id);
    link->queued_pushes.clear();
    co_return;
  }
  link->connection->start(
      [this, link](wire::Envelope& message) { on_data_message(link, message); },
      [this, address, link](const std::string& reason) { on_data_closed(address, link, reason); });
  std::vector<Completion> queued = std::move(link->queued);
  link->queued.clear();
  for (auto& c : queued) send_fetch(*link, std::move(c));
  auto pushes = std::move(link->queued_pushes);
  link->queued_pushes.clear();
  for (const auto& [ticket, task_id] : pushes) send_push(*link, ticket, task_id);
}

std::string Runtime::data_port_unreachable(const std::string& address) {
  auto it = unreachable_data_ports_.find(address);
  if (it == unreachable_data_ports_.end()) return {};
  if (std::chrono::steady_clock::now() >= it->second.until) {
    unreachable_data_ports_.erase(it);  // worth a new dial
    return {};
  }
  return "its data port " + address + " could not be reached lately: " + it->second.why;
}

void Runtime::send_fetch(DataLink& link, Completion completion) {
  const std::uint64_t request_id = next_master_request_++;
  wire::Envelope request;
  request.set_request_id(request_id);
  request.mutable_fetch_result()->set_result_id(completion.result.held().result_id());
  link.requests.emplace(request_id, std::move(completion));
  link.connection->send(request);
}

void Runtime::on_data_message(const std::shared_ptr<DataLink>& link, wire::Envelope& message) {
  if (message.has_pushed_result()) {
    on_pushed_result(*link, *message.mutable_pushed_result());
    return;
  }
  auto it = link->requests.find(message.request_id());
  if (it == link->requests.end() || !message.has_result_bytes()) return;
  Completion completion = std::move(it->second);
  link->requests.erase(it);
  const wire::ResultBytes& bytes = message.result_bytes();
  if (bytes.has_failure()) {
    fetch_held_through_master(std::move(completion), bytes.failure().message());
    return;
  }
  finish_held(completion, bytes.outcome());
}

void Runtime::on_data_closed(const std::string& address, const std::shared_ptr<DataLink>& link,
                             const std::string& reason) {
  if (auto it = data_links_.find(address); it != data_links_.end() && it->second == link)
    data_links_.erase(it);
  auto requests = std::move(link->requests);
  link->requests.clear();
  for (auto& [id, completion] : requests)
    fetch_held_through_master(std::move(completion), "the data connection closed: " + reason);
  data_link_lost(*link, reason);
}

void Runtime::fetch_held_through_master(Completion completion, std::string why) {
  const std::uint64_t id = completion.result.task_id();
  log()->info("cannot fetch the result of task {} from server {} ({}); asking the master", id,
              completion.result.held().server_id(), why);
  if (!connection_ || !connection_->is_open()) {
    Failure f;
    f.kind = FailureKind::kUnavailable;
    f.task_id = id;
    f.function = completion.function_name;
    f.message = "its result is held by server " + completion.result.held().server_id() +
                ", which cannot be reached (" + why + "), and the master is not connected";
    completion.state->complete_with_failure(std::move(f));
    return;
  }
  const std::uint64_t request_id = next_master_request_++;
  auto shared = std::make_shared<Completion>(std::move(completion));
  master_requests_[request_id] = [this, shared, why](wire::Envelope& reply) {
    const wire::ResultBytes& bytes = reply.result_bytes();
    if (!bytes.has_failure()) {
      finish_held(*shared, bytes.outcome());
      return;
    }
    Failure f;
    f.kind = static_cast<FailureKind>(bytes.failure().kind());
    f.task_id = shared->result.task_id();
    f.function = shared->function_name;
    f.server = shared->result.held().server_id();
    f.message = bytes.failure().message() + " (its server's data port: " + why + ")";
    shared->state->complete_with_failure(std::move(f));
  };
  wire::Envelope request;
  request.set_request_id(request_id);
  request.mutable_fetch_result()->set_task_id(id);
  connection_->send(request);
}

void Runtime::finish_held(Completion& completion, const std::string& outcome_bytes) {
  const std::uint64_t id = completion.result.task_id();
  detail::OutcomeView outcome;
  try {
    outcome = detail::parse_outcome_view(outcome_bytes);
  } catch (const std::exception& e) {
    outcome.ok = false;
    outcome.failure.kind = FailureKind::kProtocol;
    outcome.failure.message = std::string("undecodable outcome: ") + e.what();
  }
  if (outcome.ok) {
    completion.state->complete_with_result(outcome.result);
  } else {
    Failure f = std::move(outcome.failure);
    f.task_id = id;
    if (f.server.empty()) f.server = completion.result.server_id();
    if (f.function.empty()) f.function = completion.function_name;
    completion.state->complete_with_failure(std::move(f));
  }
  // Its last Future may have gone while the bytes travelled (or only callbacks wanted them).
  if (!completion.state->observed()) {
    std::lock_guard lock(mu_);
    release_if_unobserved(id);
  }
}

void Runtime::release_held_if_unused(std::uint64_t task_id) {
  auto held = held_.find(task_id);
  if (held == held_.end() || !held->second.dropped || held->second.pins > 0) return;
  held_.erase(held);
  release_outbox_.push_back(task_id);
  schedule_flush();
}

}  // namespace clupy::client
