#include "service/front.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "clupy/errors.hpp"
#include "common/log.hpp"
#include "common/transport.hpp"

namespace clupy::services {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

auto log() { return common::logger("service"); }

std::string error_json(std::string_view message) {
  std::string out = "{\"error\":\"";
  for (char c : message) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out + "\"}\n";
}

}  // namespace

struct Front::Connection {
  explicit Connection(tcp::socket socket)
      : stream(std::move(socket)), signal(stream.get_executor()) {}
  beast::tcp_stream stream;
  asio::steady_timer signal;  // a call's answer cancels it
  bool answered = false;
  Reply reply;
  std::uint64_t call_number = 0;  // answers of earlier calls are ignored
};

Front::Front(asio::io_context& io, FrontOptions options, FrontHandler& handler)
    : io_(io), options_(std::move(options)), handler_(handler), acceptor_(io) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(options_.bind, ec);
  if (ec) throw ConfigError("bind address '" + options_.bind + "' is not an IP address");
  tcp::endpoint endpoint(address, static_cast<unsigned short>(options_.port));
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) common::set_close_on_exec(acceptor_.native_handle());
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    if (ec == asio::error::address_in_use)
      throw ConfigError("port " + std::to_string(options_.port) + " on " + options_.bind +
                        " is taken (" + ec.message() +
                        "): choose another port in the service file");
    throw ConfigError("cannot listen on " + options_.bind + ":" + std::to_string(options_.port) +
                      ": " + ec.message());
  }
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(io_, accept_loop(), asio::detached);
}

Front::~Front() { stop(); }

void Front::stop() {
  *alive_ = false;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  for (const auto& connection : connections_) {
    connection->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    connection->stream.socket().close(ignored);
    connection->signal.cancel();
  }
  connections_.clear();
}

asio::awaitable<void> Front::accept_loop() {
  const auto alive = alive_;
  while (*alive) {
    tcp::socket socket(io_);
    boost::system::error_code ec;
    co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (!*alive) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      log()->warn("service front on port {}: accept failed: {}", port_, ec.message());
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto connection = std::make_shared<Connection>(std::move(socket));
    connections_.insert(connection);
    asio::co_spawn(io_, serve(connection), asio::detached);
  }
}

asio::awaitable<void> Front::serve(std::shared_ptr<Connection> c) {
  const auto alive = alive_;
  beast::flat_buffer buffer;
  boost::system::error_code ec;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(options_.max_body);
    c->stream.expires_after(std::chrono::seconds(60));  // an idle keep-alive connection ends
    co_await http::async_read(c->stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (!*alive) co_return;
    http::response<http::string_body> response;
    response.version(11);
    response.set(http::field::server, "clupy-service");
    Reply reply;
    bool keep_alive = false;
    const auto started = ServiceStats::Clock::now();
    std::string entry;
    if (ec == http::error::body_limit) {
      reply = {413, "application/json",
               error_json("the body is larger than max_body (" + std::to_string(options_.max_body) +
                          " bytes)")};
      entry = "(too large)";
    } else if (ec) {
      if (ec != beast::error::timeout && ec != http::error::end_of_stream &&
          ec != asio::error::eof && ec != asio::error::connection_reset &&
          ec != asio::error::operation_aborted) {
        reply = {400, "application/json", error_json("bad request: " + ec.message())};
      } else {
        break;
      }
    } else {
      auto& request = parser.get();
      keep_alive = request.keep_alive();
      std::string_view target = request.target();
      if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
      std::string_view path = target.substr(target.starts_with('/') ? 1 : 0);
      std::string_view authorization;
      if (auto it = request.find(http::field::authorization); it != request.end())
        authorization = it->value();
      if (request.method() == http::verb::get && path == "health") {
        reply = {200, "text/plain; charset=utf-8", "ok\n"};
      } else if (!handler_.authorized(authorization)) {
        reply = {401, "application/json",
                 error_json("this service needs a credential: send \"Authorization: Bearer "
                            "<key>\"")};
      } else if (request.method() == http::verb::get) {
        if (path == "ready" || path == "status" || path == "metrics" || path == "openapi.json") {
          reply = handler_.page(path);
        } else {
          reply = {404, "application/json",
                   error_json("no page /" + std::string(path) +
                              "; GET /health, /ready, /status, /metrics, /openapi.json, or POST "
                              "/<entry point>")};
        }
      } else if (request.method() != http::verb::post) {
        reply = {405, "application/json", error_json("use POST /<entry point> or GET a page")};
      } else if (!handler_.has_entry(path)) {
        reply = {404, "application/json",
                 error_json("no entry point '" + std::string(path) +
                            "' (GET /openapi.json lists them)")};
        entry = "(unknown)";
      } else {
        entry = std::string(path);
        stats_.started();
        c->answered = false;
        const std::uint64_t number = ++c->call_number;
        handler_.call(entry, std::move(request.body()), [c, number, alive](Reply answer) {
          if (!*alive || c->call_number != number || c->answered) return;
          c->answered = true;
          c->reply = std::move(answer);
          c->signal.cancel();
        });
        if (*alive && !c->answered) {
          c->signal.expires_after(options_.timeout + std::chrono::seconds(1));
          co_await c->signal.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          if (!*alive) co_return;
        }
        stats_.finished();
        if (c->answered) {
          reply = std::move(c->reply);
        } else {
          c->answered = true;  // a late answer is dropped
          reply = {504, "application/json",
                   error_json(entry + " gave no answer within the service's timeout")};
        }
      }
    }
    if (!entry.empty())
      stats_.record(entry, reply.status, ServiceStats::Clock::now() - started,
                    ServiceStats::Clock::now());
    response.result(static_cast<http::status>(reply.status));
    if (reply.status == 401) response.set(http::field::www_authenticate, "Bearer realm=\"clupy\"");
    response.set(http::field::content_type, reply.content_type);
    response.keep_alive(keep_alive);
    response.body() = std::move(reply.body);
    response.prepare_payload();
    c->stream.expires_after(std::chrono::seconds(30));
    co_await http::async_write(c->stream, response, asio::redirect_error(asio::use_awaitable, ec));
    if (!*alive) co_return;
    if (ec || !keep_alive) break;
  }
  c->stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  connections_.erase(c);
}

}  // namespace clupy::services
