// A service's HTTP front (Boost.Beast, HTTP/1.1 with keep-alive): POST /<entry_point> with a
// JSON body, GET /health, /ready, /status, /metrics and /openapi.json. It checks the
// credential, the body's size and the entry's name itself and hands calls to its handler, which
// answers later (over the cluster protocol). Runs on one io_context thread; not thread-safe.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "service/stats.hpp"

namespace clupy::services {

struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// Answers one call; the front ignores an answer that comes after the request timed out or its
// connection closed. Call at most once, on the front's io_context thread.
using Respond = std::function<void(Reply)>;

class FrontHandler {
 public:
  // Whether the Authorization header's value (may be "") lets its bearer call and read.
  virtual bool authorized(std::string_view authorization) const = 0;
  virtual bool has_entry(std::string_view entry) const = 0;
  // Runs entry(body) and answers through `respond`.
  virtual void call(const std::string& entry, std::string body, Respond respond) = 0;
  // GET /ready, /status, /metrics, /openapi.json (the front answers /health itself).
  virtual Reply page(std::string_view path) = 0;

 protected:
  virtual ~FrontHandler() = default;
};

struct FrontOptions {
  std::string bind = "127.0.0.1";
  int port = 0;
  std::size_t max_body = 1 << 20;
  // A call unanswered this long is a 504 (the replica's own timeout kills it sooner).
  std::chrono::milliseconds timeout{5000};
};

class Front {
 public:
  // Binds and starts accepting. Throws clupy::ConfigError naming the address when it cannot
  // ("port 8080 is taken").
  Front(boost::asio::io_context& io, FrontOptions options, FrontHandler& handler);
  ~Front();
  Front(const Front&) = delete;
  Front& operator=(const Front&) = delete;

  unsigned short port() const { return port_; }
  // Closes the listening socket and every connection: the port is free when this returns.
  void stop();
  ServiceStats& stats() { return stats_; }
  const FrontOptions& options() const { return options_; }
  void set_timeout(std::chrono::milliseconds timeout) { options_.timeout = timeout; }
  void set_max_body(std::size_t max_body) { options_.max_body = max_body; }

  struct Connection;

 private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(std::shared_ptr<Connection> connection);

  boost::asio::io_context& io_;
  FrontOptions options_;
  FrontHandler& handler_;
  boost::asio::ip::tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::set<std::shared_ptr<Connection>> connections_;
  ServiceStats stats_;
  // Connection coroutines check it: the Front may be gone when they resume.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace clupy::services
