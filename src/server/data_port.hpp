// A server's data port (protocol 1.4): clients and other servers connect here, with the same
// handshake and token as the master's port, to fetch results this server holds
// (FetchResult -> ResultBytes), and clients push the calls of tasks placed here (PushedCall,
// protocol 1.5; the outcome may come back on the same connection as PushedResult). Owned by the
// server's io_context thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "common/connection.hpp"

namespace clupy::server {

namespace asio = boost::asio;

class DataPort {
 public:
  // The outcome of a held result; nullopt when it is not held.
  using Lookup = std::function<std::optional<std::string>(std::uint64_t result_id)>;
  // A pushed call and the connection it came on (to send its outcome back on).
  using CallSink =
      std::function<void(wire::PushedCall&& call, const std::shared_ptr<common::Connection>& from)>;
  struct Limits {
    std::size_t max_frame_size = 0;  // after the handshake (before it: kHandshakeMaxFrameSize)
    std::chrono::milliseconds handshake_timeout{10'000};
    std::size_t max_pending_connections = 64;  // in their handshake at once; more are closed
  };
  // Binds `bind`:`port` (0: any free port). Throws clupy::ConfigError when it cannot.
  DataPort(asio::io_context& io, const std::string& bind, int port,
           std::optional<std::string> token, Limits limits, Lookup lookup, CallSink calls);
  ~DataPort();
  unsigned short port() const { return port_; }
  void stop();
  std::uint64_t bytes_served() const { return bytes_served_; }
  std::uint64_t fetches_served() const { return fetches_served_; }
  // Connections closed on accept because max_pending_connections were in their handshake.
  std::uint64_t connections_refused() const { return connections_refused_; }

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(std::shared_ptr<common::Connection> connection);
  void answer(const std::shared_ptr<common::Connection>& connection, wire::Envelope& message);

  asio::io_context& io_;
  asio::ip::tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::optional<std::string> token_;
  const Limits limits_;
  Lookup lookup_;
  CallSink calls_;
  std::set<std::shared_ptr<common::Connection>> connections_;
  bool stopped_ = false;
  std::uint64_t bytes_served_ = 0;
  std::uint64_t fetches_served_ = 0;
  std::size_t handshaking_ = 0;  // connections in their handshake now
  bool refusing_ = false;        // logged once per stretch of refusals
  std::uint64_t connections_refused_ = 0;
};

}  // namespace clupy::server
