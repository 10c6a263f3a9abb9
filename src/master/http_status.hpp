// The master's HTTP side: GET /status (the registry as JSON), /metrics (Prometheus text format)
// and /healthz, on `http_port`. Read-only, one request per connection, on the master's
// io_context thread. (Published services' gateway and the dashboard will live here too.)
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <string>

namespace clupy::master {

// What a handler learns of a GET.
struct HttpRequest {
  std::string target;
  std::string authorization;   // the Authorization header, "" when absent
  bool from_loopback = false;  // the peer's address is a loopback address
};

class HttpStatus {
 public:
  // Fills body and content type for a GET; returns the HTTP status (200, 401, 404, ...).
  using Handler =
      std::function<int(const HttpRequest& request, std::string& body, std::string& content_type)>;

  // Throws clupy::ConfigError when the address cannot be bound.
  HttpStatus(boost::asio::io_context& io, const std::string& bind, int port, Handler handler);
  void stop();
  unsigned short port() const;

 private:
  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  Handler handler_;
};

}  // namespace clupy::master
