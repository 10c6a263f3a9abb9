// A byte stream that is plain TCP, TLS over TCP, or a local (Unix) socket, chosen at run time,
// so the framing and handshake code above it is written once. The local socket carries the
// server <-> worker process link.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "common/config.hpp"

namespace clupy::common {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using local_socket = asio::local::stream_protocol::socket;

// Marks `fd` close-on-exec. Asio opens and accepts sockets without it, and a program a daemon
// starts (a worker) must not inherit them.
void set_close_on_exec(int fd);

class Transport {
 public:
  explicit Transport(tcp::socket socket);
  Transport(tcp::socket socket, asio::ssl::context& tls);
  explicit Transport(local_socket socket);

  bool uses_tls() const { return stream_.index() == 1; }
  // Runs the TLS handshake; nothing for a plain stream. Throws boost::system::system_error.
  asio::awaitable<void> start(bool as_server);
  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buffer);
  asio::awaitable<void> write_all(asio::const_buffer buffer);
  // Writes the buffers in order, gathered (writev) where the stream allows it.
  asio::awaitable<void> write_all(const std::vector<asio::const_buffer>& buffers);
  // Closes the socket; pending operations finish with operation_aborted. Idempotent.
  void close();
  asio::any_io_executor executor();
  // The TLS stream, or nullptr for a plain transport.
  asio::ssl::stream<tcp::socket>* tls_stream() { return std::get_if<1>(&stream_); }
  // "127.0.0.1:51234", or "unknown peer" once the socket is gone.
  std::string remote_description();
  // TCP_USER_TIMEOUT: the connection fails when data it sent stays unacknowledged this long (a
  // silent peer: a partition, a frozen machine) instead of after the kernel's ~15 minutes of
  // retransmissions. Nothing for a local socket.
  void set_unacknowledged_timeout(std::chrono::milliseconds timeout);

 private:
  std::variant<tcp::socket, asio::ssl::stream<tcp::socket>, local_socket> stream_;
};

// TLS contexts from the configured PEM files. Throws clupy::ConfigError naming the bad file.
std::shared_ptr<asio::ssl::context> make_acceptor_tls(const TlsConfig& tls);
std::shared_ptr<asio::ssl::context> make_connector_tls(const TlsConfig& tls);

}  // namespace clupy::common
