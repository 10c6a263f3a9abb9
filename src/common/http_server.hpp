// A small HTTP server for a daemon's own pages (the master's /status, /metrics, /healthz and
// dashboard; a server's /metrics): one request per connection, on the daemon's io_context
// thread. What each path answers is the handler's business.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/config.hpp"

namespace clupy::common {

// What a handler learns of a request.
struct HttpRequest {
  std::string method = "GET";  // GET, HEAD or POST (a Handler sees GET and HEAD only)
  std::string target;          // as sent: path and query
  std::string authorization;   // the Authorization header, "" when absent
  std::string cookie;          // the Cookie header, "" when absent
  std::string body;            // a POST's body (at most HttpServer::kMaxBody bytes)
  bool from_loopback = false;  // the peer's address is a loopback address

  // The target without its query.
  std::string_view path() const;
  // A query parameter, percent-decoded; "" when absent.
  std::string query_parameter(std::string_view name) const;
  // A field of an application/x-www-form-urlencoded body, decoded; "" when absent.
  std::string form_field(std::string_view name) const;
  // A cookie's value; "" when absent.
  std::string cookie_value(std::string_view name) const;
};

// What a ResponseHandler answers.
struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "text/plain; charset=utf-8";
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Set-Cookie, Location
};

// Decodes %XX escapes and, in forms, '+' as a space (application/x-www-form-urlencoded).
std::string url_decode(std::string_view text);

// Whether the request presents `token` as "Authorization: Bearer <token>" (compared in
// constant time).
bool presents_bearer_token(const HttpRequest& request, std::string_view token);

// Whether http_auth lets `request` read a daemon's protected pages (/status, /metrics): always
// with kOff or without a cluster token, else with the bearer token, or from loopback (kLoopback).
bool http_auth_allows(HttpAuth auth, const std::optional<std::string>& token,
                      const HttpRequest& request);

// The body of the 401 answer to a request http_auth_allows refused: how to get in.
std::string http_token_required_text(HttpAuth auth);

class HttpServer {
 public:
  static constexpr std::size_t kMaxBody = 16 * 1024;

  // Fills body and content type for a GET; returns the HTTP status (200, 401, 404, ...). Other
  // methods are answered 405 without calling it.
  using Handler =
      std::function<int(const HttpRequest& request, std::string& body, std::string& content_type)>;
  // Sees GET, HEAD and POST, and may set response headers.
  using ResponseHandler = std::function<void(const HttpRequest& request, HttpResponse& response)>;

  // Throws clupy::ConfigError when the address cannot be bound.
  HttpServer(boost::asio::io_context& io, const std::string& bind, int port, Handler handler);
  HttpServer(boost::asio::io_context& io, const std::string& bind, int port,
             ResponseHandler handler);
  void stop();
  unsigned short port() const;

 private:
  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  ResponseHandler handler_;
};

}  // namespace clupy::common
