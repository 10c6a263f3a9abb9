#include "common/http_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "clupy/errors.hpp"
#include "common/log.hpp"
#include "common/transport.hpp"
#include "common/version.hpp"

namespace clupy::common {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

asio::awaitable<void> serve_one(tcp::socket socket, HttpServer::Handler handler) {
  beast::tcp_stream stream(std::move(socket));
  stream.expires_after(std::chrono::seconds(10));  // a slow or silent client is dropped
  beast::flat_buffer buffer;
  http::request_parser<http::empty_body> parser;
  parser.header_limit(16 * 1024);
  http::response<http::string_body> response;
  response.version(11);
  response.set(http::field::server, std::string("clupy-master/") + common::library_version());
  response.keep_alive(false);
  boost::system::error_code peer_error;
  const auto peer = stream.socket().remote_endpoint(peer_error);
  try {
    co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
    const auto& request = parser.get();
    std::string body, type = "text/plain; charset=utf-8";
    if (request.method() != http::verb::get && request.method() != http::verb::head) {
      response.result(http::status::method_not_allowed);
      body = "only GET\n";
    } else {
      HttpRequest asked;
      asked.target = std::string(request.target());
      if (auto it = request.find(http::field::authorization); it != request.end())
        asked.authorization = std::string(it->value());
      asked.from_loopback = !peer_error && peer.address().is_loopback();
      response.result(static_cast<http::status>(handler(asked, body, type)));
      if (response.result() == http::status::unauthorized)
        response.set(http::field::www_authenticate, "Bearer realm=\"clupy\"");
    }
    response.set(http::field::content_type, type);
    response.body() = std::move(body);
  } catch (const boost::system::system_error& e) {
    if (e.code() == beast::error::timeout || e.code() == http::error::end_of_stream) co_return;
    response.result(http::status::bad_request);
    response.set(http::field::content_type, "text/plain");
    response.body() = "bad request: " + e.code().message() + "\n";
  }
  response.prepare_payload();
  boost::system::error_code ignored;
  try {
    co_await http::async_write(stream, response, asio::use_awaitable);
  } catch (const boost::system::system_error& e) {
    // The client left before reading the answer: its loss, nothing for the master to do.
    common::logger("master")->debug("status page: answer not delivered: {}", e.what());
  }
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, HttpServer::Handler handler) {
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

HttpServer::HttpServer(asio::io_context& io, const std::string& bind, int port, Handler handler)
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
  common::logger("master")->info("HTTP status on http://{}:{}/status and /metrics", bind,
                                 this->port());
  asio::co_spawn(io_, accept_loop(acceptor_, handler_), asio::detached);
}

void HttpServer::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

unsigned short HttpServer::port() const { return acceptor_.local_endpoint().port(); }

}  // namespace clupy::common
