// The master daemon: accepts connections from servers, clients and the CLI, authenticates them,
// and keeps the server registry. One io_context thread owns everything here.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/config.hpp"
#include "common/connection.hpp"
#include "common/handshake.hpp"
#include "master/registry.hpp"

namespace clupy::master {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class Master {
 public:
  // Reads or creates the token file and prepares TLS. Throws clupy::ConfigError.
  Master(asio::io_context& io, common::MasterConfig config);
  ~Master();

  // Binds and starts accepting. Throws clupy::ConfigError when the address cannot be bound.
  void start();
  // Closes the listener and every connection; run() returns once they are gone.
  void stop();
  tcp::endpoint local_endpoint() const;
  const Registry& registry() const { return registry_; }

 private:
  struct Session {
    std::shared_ptr<common::Connection> connection;
    common::PeerIdentity peer;
  };

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(std::shared_ptr<common::Connection> connection);
  void handle(std::uint64_t session_id, wire::Envelope& message);
  void on_session_closed(std::uint64_t session_id, const std::string& reason);
  void schedule_maintenance();
  void maintain();

  asio::io_context& io_;
  common::MasterConfig config_;
  std::optional<std::string> token_;
  std::shared_ptr<asio::ssl::context> tls_;
  tcp::acceptor acceptor_;
  asio::steady_timer maintenance_timer_;
  Registry registry_;
  std::map<std::uint64_t, Session> sessions_;
  std::uint64_t next_session_id_ = 1;
  Clock::time_point started_at_;
  bool stopping_ = false;
};

// `clupy --master`: runs until SIGINT or SIGTERM. Returns the process exit code.
int run_master(const common::MasterConfig& config);

}  // namespace clupy::master
