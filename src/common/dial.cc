#include "common/dial.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "clupy/errors.hpp"

namespace clupy::common {

asio::awaitable<Dialed> dial_master(const DialOptions& options) {
  auto executor = co_await asio::this_coro::executor;
  const std::string where = options.address.to_string();
  // One deadline for the whole exchange: the timer closes the socket, which ends any await.
  auto socket = std::make_shared<tcp::socket>(executor);
  auto connection_slot = std::make_shared<std::weak_ptr<Connection>>();
  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer deadline(executor, options.timeout);
  deadline.async_wait([socket, connection_slot, timed_out](boost::system::error_code ec) {
    if (ec) return;
    *timed_out = true;
    boost::system::error_code ignored;
    socket->close(ignored);
    if (auto connection = connection_slot->lock()) connection->close("handshake timed out");
  });

  std::shared_ptr<asio::ssl::context> tls_context;
  if (options.tls.enabled) tls_context = make_connector_tls(options.tls);

  try {
    tcp::resolver resolver(executor);
    auto endpoints = co_await resolver.async_resolve(
        options.address.host, std::to_string(options.address.port), asio::use_awaitable);
    co_await asio::async_connect(*socket, endpoints, asio::use_awaitable);
  } catch (const boost::system::system_error& e) {
    throw ConnectionError("cannot connect to the master at " + where + ": " +
                          (*timed_out ? std::string("timed out") : e.code().message()));
  }

  std::optional<Transport> transport;
  if (tls_context) {
    transport.emplace(std::move(*socket), *tls_context);
  } else {
    transport.emplace(std::move(*socket));
  }
  auto connection = std::make_shared<Connection>(std::move(*transport), options.max_frame_size);
  *connection_slot = connection;
  try {
    if (tls_context) {
      auto* stream = connection->transport().tls_stream();
      // SNI; OpenSSL's macro hides a C cast.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
      SSL_set_tlsext_host_name(stream->native_handle(), options.address.host.c_str());
#pragma GCC diagnostic pop
      stream->set_verify_callback(asio::ssl::host_name_verification(options.address.host));
      co_await connection->transport().start(false);
    }
    ConnectorAuth auth;
    auth.token = options.token;
    auth.role = options.role;
    auth.master_is_loopback = is_loopback_host(options.address.host);
    PeerIdentity master = co_await connect_handshake(*connection, auth);
    deadline.cancel();
    co_return Dialed{connection, master};
  } catch (const ConnectionClosed& e) {
    throw ConnectionError("lost the connection to the master at " + where +
                          " during the handshake: " + (*timed_out ? "timed out" : e.what()) +
                          (tls_context ? "" : " (is the master using TLS?)"));
  } catch (const boost::system::system_error& e) {
    throw ConnectionError("TLS handshake with the master at " + where +
                          " failed: " + e.code().message());
  }
}

}  // namespace clupy::common
