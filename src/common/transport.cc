#include "common/transport.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "clupy/errors.hpp"

namespace clupy::common {

void set_close_on_exec(int fd) {
  if (fd >= 0) ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
}

Transport::Transport(tcp::socket socket) : stream_(std::in_place_index<0>, std::move(socket)) {
  set_close_on_exec(std::get<0>(stream_).native_handle());
  boost::system::error_code ignored;
  std::get<0>(stream_).set_option(tcp::no_delay(true), ignored);
}

Transport::Transport(tcp::socket socket, asio::ssl::context& tls)
    : stream_(std::in_place_index<1>, std::move(socket), tls) {
  set_close_on_exec(std::get<1>(stream_).next_layer().native_handle());
  boost::system::error_code ignored;
  std::get<1>(stream_).next_layer().set_option(tcp::no_delay(true), ignored);
}

Transport::Transport(local_socket socket) : stream_(std::in_place_index<2>, std::move(socket)) {
  set_close_on_exec(std::get<2>(stream_).native_handle());
}

void Transport::set_unacknowledged_timeout(std::chrono::milliseconds timeout) {
  int fd = -1;
  if (auto* plain = std::get_if<0>(&stream_)) fd = plain->native_handle();
  if (auto* tls = std::get_if<1>(&stream_)) fd = tls->next_layer().native_handle();
  if (fd < 0) return;
  const unsigned ms = static_cast<unsigned>(timeout.count());
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
}

asio::awaitable<void> Transport::start(bool as_server) {
  if (auto* tls = std::get_if<1>(&stream_))
    co_await tls->async_handshake(
        as_server ? asio::ssl::stream_base::server : asio::ssl::stream_base::client,
        asio::use_awaitable);
}

asio::awaitable<std::size_t> Transport::read_some(asio::mutable_buffer buffer) {
  if (auto* tls = std::get_if<1>(&stream_))
    co_return co_await tls->async_read_some(buffer, asio::use_awaitable);
  if (auto* local = std::get_if<2>(&stream_))
    co_return co_await local->async_read_some(buffer, asio::use_awaitable);
  co_return co_await std::get<0>(stream_).async_read_some(buffer, asio::use_awaitable);
}

asio::awaitable<void> Transport::write_all(asio::const_buffer buffer) {
  if (auto* tls = std::get_if<1>(&stream_))
    co_await asio::async_write(*tls, buffer, asio::use_awaitable);
  else if (auto* local = std::get_if<2>(&stream_))
    co_await asio::async_write(*local, buffer, asio::use_awaitable);
  else
    co_await asio::async_write(std::get<0>(stream_), buffer, asio::use_awaitable);
}

asio::awaitable<void> Transport::write_all(const std::vector<asio::const_buffer>& buffers) {
  if (auto* tls = std::get_if<1>(&stream_))
    co_await asio::async_write(*tls, buffers, asio::use_awaitable);
  else if (auto* local = std::get_if<2>(&stream_))
    co_await asio::async_write(*local, buffers, asio::use_awaitable);
  else
    co_await asio::async_write(std::get<0>(stream_), buffers, asio::use_awaitable);
}

asio::any_io_executor Transport::executor() {
  return std::visit([](auto& stream) { return stream.get_executor(); }, stream_);
}

void Transport::close() {
  boost::system::error_code ignored;
  if (auto* local = std::get_if<2>(&stream_)) {
    local->shutdown(local_socket::shutdown_both, ignored);
    local->close(ignored);
    return;
  }
  tcp::socket& socket = uses_tls() ? std::get<1>(stream_).next_layer() : std::get<0>(stream_);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

std::string Transport::remote_description() {
  if (std::holds_alternative<local_socket>(stream_)) return "local socket";
  boost::system::error_code ec;
  tcp::socket& socket = uses_tls() ? std::get<1>(stream_).next_layer() : std::get<0>(stream_);
  auto endpoint = socket.remote_endpoint(ec);
  if (ec) return "unknown peer";
  return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

namespace {
template <class F>
void load_pem(const std::string& what, const std::string& path, F&& load) {
  boost::system::error_code ec;
  load(ec);
  if (ec) throw ConfigError("cannot load TLS " + what + " '" + path + "': " + ec.message());
}
}  // namespace

std::shared_ptr<asio::ssl::context> make_acceptor_tls(const TlsConfig& tls) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
  load_pem("certificate", tls.cert_file,
           [&](auto& ec) { context->use_certificate_chain_file(tls.cert_file, ec); });
  load_pem("private key", tls.key_file, [&](auto& ec) {
    context->use_private_key_file(tls.key_file, asio::ssl::context::pem, ec);
  });
  if (!tls.ca_file.empty())
    load_pem("CA file", tls.ca_file, [&](auto& ec) { context->load_verify_file(tls.ca_file, ec); });
  return context;
}

std::shared_ptr<asio::ssl::context> make_connector_tls(const TlsConfig& tls) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
  if (tls.ca_file.empty()) throw ConfigError("TLS is enabled but tls.ca_file is not set");
  load_pem("CA file", tls.ca_file, [&](auto& ec) { context->load_verify_file(tls.ca_file, ec); });
  context->set_verify_mode(asio::ssl::verify_peer);
  if (!tls.cert_file.empty())
    load_pem("certificate", tls.cert_file,
             [&](auto& ec) { context->use_certificate_chain_file(tls.cert_file, ec); });
  if (!tls.key_file.empty())
    load_pem("private key", tls.key_file, [&](auto& ec) {
      context->use_private_key_file(tls.key_file, asio::ssl::context::pem, ec);
    });
  return context;
}

}  // namespace clupy::common
