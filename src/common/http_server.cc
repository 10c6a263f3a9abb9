#include "common/http_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "clupy/errors.hpp"
#include "common/auth.hpp"
#include "common/log.hpp"
#include "common/transport.hpp"
#include "common/version.hpp"

namespace clupy::common {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The value of `name` in "a=1&b=2" (`separator` '&'), or in "a=1; b=2" (';', spaces trimmed).
std::string_view find_pair(std::string_view text, std::string_view name, char separator) {
  while (!text.empty()) {
    const std::size_t end = text.find(separator);
    std::string_view pair = text.substr(0, end);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    const std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return {};
}

asio::awaitable<void> serve_one(tcp::socket socket, HttpServer::ResponseHandler handler) {
  beast::tcp_stream stream(std::move(socket));
  stream.expires_after(std::chrono::seconds(10));  // a slow or silent client is dropped
  beast::flat_buffer buffer;
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(HttpServer::kMaxBody);
  http::response<http::string_body> response;
  response.version(11);
  response.set(http::field::server, std::string("clupy-master/") + common::library_version());
  response.keep_alive(false);
  boost::system::error_code peer_error;
  const auto peer = stream.socket().remote_endpoint(peer_error);
  try {
    co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
    auto& request = parser.get();
    HttpResponse answer;
    if (request.method() != http::verb::get && request.method() != http::verb::head &&
        request.method() != http::verb::post) {
      answer.status = 405;
      answer.body = "only GET and POST\n";
    } else {
      HttpRequest asked;
      asked.method = std::string(request.method_string());
      asked.target = std::string(request.target());
      if (auto it = request.find(http::field::authorization); it != request.end())
        asked.authorization = std::string(it->value());
      if (auto it = request.find(http::field::cookie); it != request.end())
        asked.cookie = std::string(it->value());
      asked.body = std::move(request.body());
      asked.from_loopback = !peer_error && peer.address().is_loopback();
      handler(asked, answer);
    }
    response.result(static_cast<http::status>(answer.status));
    if (response.result() == http::status::unauthorized)
      response.set(http::field::www_authenticate, "Bearer realm=\"clupy\"");
    for (const auto& [name, value] : answer.headers) response.insert(name, value);
    response.set(http::field::content_type, answer.content_type);
    response.body() = std::move(answer.body);
  } catch (const boost::system::system_error& e) {
    if (e.code() == beast::error::timeout || e.code() == http::error::end_of_stream) co_return;
    response.result(e.code() == http::error::body_limit ? http::status::payload_too_large
                                                        : http::status::bad_request);
    response.set(http::field::content_type, "text/plain");
    response.body() = "bad request: " + e.code().message() + "\n";
  }
  response.prepare_payload();
  boost::system::error_code ignored;
  try {
    co_await http::async_write(stream, response, asio::use_awaitable);
  } catch (const boost::system::system_error& e) {
    // The client left before reading the answer: its loss, nothing for the daemon to do.
    common::logger("net")->debug("HTTP answer not delivered: {}", e.what());
  }
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, HttpServer::ResponseHandler handler) {
  while (acceptor.is_open()) {
    tcp::socket socket(acceptor.get_executor());
    try {
      co_await acceptor.async_accept(socket, asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      if (e.code() == asio::error::operation_aborted) co_return;
      continue;
    }
    asio::co_spawn(acceptor.get_executor(), serve_one(std::move(socket), handler), asio::detached);
  }
}

}  // namespace

std::string url_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && hex_digit(text[i + 1]) >= 0 &&
               hex_digit(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_digit(text[i + 1]) * 16 + hex_digit(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string_view HttpRequest::path() const {
  return std::string_view(target).substr(0, target.find('?'));
}

std::string HttpRequest::query_parameter(std::string_view name) const {
  const std::size_t mark = target.find('?');
  if (mark == std::string::npos) return {};
  return url_decode(find_pair(std::string_view(target).substr(mark + 1), name, '&'));
}

std::string HttpRequest::form_field(std::string_view name) const {
  return url_decode(find_pair(body, name, '&'));
}

std::string HttpRequest::cookie_value(std::string_view name) const {
  return std::string(find_pair(cookie, name, ';'));
}

HttpServer::HttpServer(asio::io_context& io, const std::string& bind, int port, Handler handler)
    : HttpServer(
          io, bind, port,
          [handler = std::move(handler)](const HttpRequest& request, HttpResponse& response) {
            if (request.method == "POST") {
              response.status = 405;
              response.body = "only GET\n";
              return;
            }
            response.status = handler(request, response.body, response.content_type);
          }) {}

HttpServer::HttpServer(asio::io_context& io, const std::string& bind, int port,
                       ResponseHandler handler)
    : io_(io), acceptor_(io), handler_(std::move(handler)) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(bind, ec);
  if (ec) throw ConfigError("bind address '" + bind + "' is not an IP address");
  tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  acceptor_.open(endpoint.protocol());
  common::set_close_on_exec(acceptor_.native_handle());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint, ec);
  if (ec)
    throw ConfigError("cannot serve HTTP on " + bind + ":" + std::to_string(port) + ": " +
                      ec.message());
  acceptor_.listen();
  asio::co_spawn(io_, accept_loop(acceptor_, handler_), asio::detached);
}

void HttpServer::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

unsigned short HttpServer::port() const { return acceptor_.local_endpoint().port(); }

bool presents_bearer_token(const HttpRequest& request, std::string_view token) {
  constexpr std::string_view kBearer = "Bearer ";
  const std::string_view presented = request.authorization;
  return presented.starts_with(kBearer) &&
         constant_time_equal(presented.substr(kBearer.size()), token);
}

bool http_auth_allows(HttpAuth auth, const std::optional<std::string>& token,
                      const HttpRequest& request) {
  if (auth == HttpAuth::kOff || !token) return true;
  if (presents_bearer_token(request, *token)) return true;
  return auth == HttpAuth::kLoopback && request.from_loopback;
}

std::string http_token_required_text(HttpAuth auth) {
  return std::string(
             "this needs the cluster token: send \"Authorization: Bearer <token>\" "
             "(http_auth: ") +
         (auth == HttpAuth::kToken ? "token" : "loopback") + ")\n";
}

}  // namespace clupy::common
