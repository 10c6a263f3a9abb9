#include "client/admin.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "clupy/cluster.hpp"
#include "clupy/errors.hpp"
#include "common/auth.hpp"
#include "common/dial.hpp"
#include "common/log.hpp"
#include "common/master_locator.hpp"
#include "common/version.hpp"
#include "deps/package_sync.hpp"

namespace clupy {
namespace {

using common::asio::awaitable;

std::chrono::system_clock::time_point from_ms(std::int64_t ms) {
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
}

awaitable<wire::RegistryReply> fetch_registry(common::DialOptions options) {
  auto dialed = co_await common::dial_master(options);
  wire::Envelope request;
  request.set_request_id(1);
  request.mutable_registry_request();
  dialed.connection->send(request);
  wire::Envelope reply;
  try {
    reply = co_await dialed.connection->read_frame();
  } catch (const common::ConnectionClosed& e) {
    throw ConnectionError(std::string("the master closed the connection: ") + e.what());
  }
  dialed.connection->close("done");
  if (!reply.has_registry_reply())
    throw ConnectionError("the master answered with an unexpected message");
  co_return std::move(*reply.mutable_registry_reply());
}

}  // namespace

namespace client {

common::DialOptions admin_dial_options(const ConnectOptions& options) {
  common::ClientConfig config = common::load_client_config(options.config_file);
  if (!options.master_url.empty()) config.master_url = options.master_url;
  if (!options.token_file.empty()) config.token_file = options.token_file;
  if (options.timeout.count() > 0) config.connect_timeout = options.timeout;
  common::DialOptions dial;
  const std::string url = config.master_url.empty() ? "clupy://localhost:7878" : config.master_url;
  if (common::is_zk_url(url)) {
    // Standby masters: ask ZooKeeper which one is elected now, as servers and programs do.
    common::MasterLocator locator(url, config.coordination);
    dial.address = common::parse_master_url(locator.resolve(config.connect_timeout).url);
  } else {
    dial.address = common::parse_master_url(url);
  }
  dial.role = wire::ROLE_ADMIN;
  dial.token = common::resolve_token(config.token_file);
  dial.tls = config.tls;
  dial.max_frame_size = config.max_frame_size;
  dial.timeout = config.connect_timeout;
  return dial;
}

common::Dialed dial_blocking(common::asio::io_context& io, const common::DialOptions& options) {
  auto dialed = common::asio::co_spawn(io, common::dial_master(options), common::asio::use_future);
  io.restart();
  io.run();
  return dialed.get();
}

}  // namespace client

ClusterStatus cluster_status(const ConnectOptions& options) {
  const common::DialOptions dial = client::admin_dial_options(options);
  common::asio::io_context io(1);
  auto result = common::asio::co_spawn(io, fetch_registry(dial), common::asio::use_future);
  io.run();
  wire::RegistryReply reply = result.get();

  ClusterStatus status;
  status.master_url = dial.address.to_string();
  status.master_version = reply.master_version();
  status.master_time = from_ms(reply.master_time_ms());
  status.master_started = from_ms(reply.master_started_ms());
  status.queued_tasks = reply.queued_tasks();
  status.running_tasks = reply.running_tasks();
  status.clients = reply.clients();
  status.dependency_manifest = reply.dependency_manifest_version();
  status.dependency_manifest_error = reply.dependency_manifest_error();
  for (const auto& entry : reply.servers()) {
    ServerStatus& s = status.servers.emplace_back();
    const auto& d = entry.server();
    s.server_id = d.server_id();
    s.hostname = d.hostname();
    s.address = d.address();
    s.pid = d.pid();
    s.capacity = d.capacity();
    s.busy_slots = entry.busy_slots();
    s.labels.insert(d.labels().begin(), d.labels().end());
    s.version = d.build().library_version() + " (protocol " +
                std::to_string(d.build().protocol_major()) + "." +
                std::to_string(d.build().protocol_minor()) + ")";
    s.abi_tag = d.build().abi_tag();
    s.registered_at = from_ms(entry.registered_at_ms());
    s.last_heartbeat = from_ms(entry.last_heartbeat_ms());
    s.reserved_by = entry.reserved_by();
    if (!s.reserved_by.empty()) s.reserved_since = from_ms(entry.reserved_since_ms());
    s.connected = entry.connected();
    const auto& report = entry.dependencies();
    if (!report.manifest_version().empty()) {
      s.dependency_manifest = report.manifest_version();
      s.dependency_state = report.in_progress() ? "syncing"
                           : report.satisfied() ? "satisfied"
                                                : "not satisfied";
      s.dependency_summary = report.summary();
      for (const auto& item : report.items()) {
        DependencyStatus& dependency = s.dependencies.emplace_back();
        dependency.kind = item.kind() == wire::DependencyItem::LIBRARY ? "library" : "package";
        dependency.name = item.name();
        dependency.required = item.required();
        dependency.state = deps::state_name(item.state());
        dependency.version = item.version();
        dependency.detail = item.detail();
        dependency.exit_code = item.exit_code();
      }
    }
  }
  return status;
}

}  // namespace clupy
