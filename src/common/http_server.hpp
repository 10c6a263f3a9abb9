// A small HTTP server for a daemon's own pages (the master's /status, /metrics, /healthz and
// dashboard; a server's /metrics): GET only, one request per connection, on the daemon's
// io_context thread. What each path answers is the handler's business.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <string>

namespace clupy::common {

// What a handler learns of a GET.
struct HttpRequest {
  std::string target;
  std::string authorization;   // the Authorization header, "" when absent
  bool from_loopback = false;  // the peer's address is a loopback address
};

class HttpServer {
 public:
  // Fills body and content type for a GET; returns the HTTP status (200, 401, 404, ...).
  using Handler =
      std::function<int(const HttpRequest& request, std::string& body, std::string& content_type)>;

  // Throws clupy::ConfigError when the address cannot be bound.
  HttpServer(boost::asio::io_context& io, const std::string& bind, int port, Handler handler);
  void stop();
  unsigned short port() const;

 private:
  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  Handler handler_;
};

}  // namespace clupy::common
