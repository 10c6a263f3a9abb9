// How a process learns its cluster's store and coordination service: from the master's handshake
// (programs after clupy::init, the CLI) or from the environment its server gave it (worker
// processes).
#include "store/cluster_link.hpp"

#include "client/admin.hpp"
#include "client/runtime.hpp"
#include "coord/cluster_link.hpp"

namespace clupy::detail {

std::optional<StoreOptions> cluster_store_options() {
  if (auto from_env = store_options_from_env()) return from_env;
  if (!client::Runtime::initialized()) return std::nullopt;
  const wire::ClusterServices services = client::Runtime::get().services();
  return store_options_from(services.store_url(), services.store_key_prefix(),
                            services.store_chunk_size());
}

std::optional<coord::SessionOptions> cluster_coordination_options() {
  if (auto from_env = coordination_options_from_env()) return from_env;
  if (!client::Runtime::initialized()) return std::nullopt;
  const wire::ClusterServices services = client::Runtime::get().services();
  return coordination_options_from(services.coordination_connect(),
                                   services.coordination_session_timeout_ms(),
                                   services.coordination_digest_auth());
}

std::optional<StoreOptions> fetch_store_options(const ConnectOptions& options) {
  boost::asio::io_context io(1);  // outlives `link`, whose socket belongs to it
  common::Dialed link = client::dial_blocking(io, client::admin_dial_options(options));
  const wire::ClusterServices services = link.master.services;
  link.connection->close("done");
  io.restart();
  io.run();  // lets the close handler run before the connection goes
  return store_options_from(services.store_url(), services.store_key_prefix(),
                            services.store_chunk_size());
}

}  // namespace clupy::detail
