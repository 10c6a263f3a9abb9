#include "server/data_port.hpp"

#include <google/protobuf/descriptor.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "clupy/errors.hpp"
#include "common/handshake.hpp"
#include "common/log.hpp"
#include "common/transport.hpp"

namespace clupy::server {

namespace {
auto log() { return common::logger("server"); }
}  // namespace

DataPort::DataPort(asio::io_context& io, const std::string& bind, int port,
                   std::optional<std::string> token, Limits limits, Lookup lookup, CallSink calls)
    : io_(io),
      acceptor_(io),
      token_(std::move(token)),
      limits_(limits),
      lookup_(std::move(lookup)),
      calls_(std::move(calls)) {
  try {
    const asio::ip::tcp::endpoint endpoint(asio::ip::make_address(bind),
                                           static_cast<unsigned short>(port));
    acceptor_.open(endpoint.protocol());
    common::set_close_on_exec(acceptor_.native_handle());  // workers must not inherit it
    acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
  } catch (const std::exception& e) {
    throw ConfigError("cannot listen for data connections on " + bind + ":" + std::to_string(port) +
                      ": " + e.what());
  }
  asio::co_spawn(io_, accept_loop(), asio::detached);
}

DataPort::~DataPort() { stop(); }

void DataPort::stop() {
  if (stopped_) return;
  stopped_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  auto connections = std::move(connections_);
  for (const auto& connection : connections) connection->close("server stopping");
}

asio::awaitable<void> DataPort::accept_loop() {
  while (!stopped_) {
    asio::ip::tcp::socket socket(io_);
    try {
      co_await acceptor_.async_accept(socket, asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      if (e.code() == asio::error::operation_aborted || stopped_) co_return;
      log()->error("data port: accept failed: {}", e.code().message());
      continue;
    }
    if (handshaking_ >= limits_.max_pending_connections) {
      // Each connection in its handshake may hold up to kHandshakeMaxFrameSize until its
      // deadline: capping their number bounds what unauthenticated peers can make us hold.
      if (!refusing_)
        log()->warn(
            "data port: {} connections are in their handshake (max_pending_connections): "
            "refusing new connections until some finish",
            handshaking_);
      refusing_ = true;
      ++connections_refused_;
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    refusing_ = false;
    ++handshaking_;  // here, not in serve(): the next accept already sees it
    auto connection = std::make_shared<common::Connection>(common::Transport(std::move(socket)),
                                                           limits_.max_frame_size);
    asio::co_spawn(io_, serve(std::move(connection)), asio::detached);
  }
}

asio::awaitable<void> DataPort::serve(std::shared_ptr<common::Connection> connection) {
  asio::steady_timer deadline(io_, limits_.handshake_timeout);
  std::weak_ptr<common::Connection> weak = connection;
  deadline.async_wait([weak](boost::system::error_code ec) {
    if (auto c = weak.lock(); c && !ec) c->close("handshake timed out");
  });
  connection->limit_incoming_frames(common::kHandshakeMaxFrameSize);
  const common::AcceptorAuth auth{token_, "server", {}, 0};
  try {
    co_await common::accept_handshake(*connection, auth);
  } catch (const std::exception& e) {
    --handshaking_;
    log()->warn("data port: closing connection from {}: {}", connection->peer(), e.what());
    connection->close("handshake failed");
    co_return;
  }
  --handshaking_;
  deadline.cancel();
  // Authenticated: a peer may now send pushed calls, as large as a frame may be.
  connection->limit_incoming_frames(limits_.max_frame_size);
  if (stopped_) {
    connection->close("server stopping");
    co_return;
  }
  connections_.insert(connection);
  connection->start(
      [this, weak](wire::Envelope& message) {
        if (auto c = weak.lock()) answer(c, message);
      },
      [this, weak](const std::string& reason) {
        auto c = weak.lock();
        if (!c) return;
        // Why it ended (the peer closed it, a frame that does not parse, one over the limit, a
        // message the port does not serve) is in the log, at the level the master logs its
        // sessions' ends.
        log()->debug("data port: connection from {} closed: {}", c->peer(), reason);
        connections_.erase(c);
      });
}

void DataPort::answer(const std::shared_ptr<common::Connection>& connection,
                      wire::Envelope& message) {
  if (message.has_pushed_call()) {
    calls_(std::move(*message.mutable_pushed_call()), connection);
    return;
  }
  wire::Envelope reply;
  reply.set_request_id(message.request_id());
  if (!message.has_fetch_result()) {
    const auto* body = wire::Envelope::descriptor()->FindFieldByNumber(message.body_case());
    log()->warn(
        "data port: closing connection from {}: it sent {}, which a data port does not "
        "serve",
        connection->peer(), body ? std::string(body->name()) : std::string("an empty envelope"));
    reply.mutable_error()->set_message("a data port takes FetchResult and PushedCall only");
    connection->send(reply);
    connection->close_after_flush("unexpected message");
    return;
  }
  const std::uint64_t id = message.fetch_result().result_id();
  if (auto outcome = lookup_(id)) {
    bytes_served_ += outcome->size();
    ++fetches_served_;
    reply.mutable_result_bytes()->set_outcome(std::move(*outcome));
  } else {
    auto* failure = reply.mutable_result_bytes()->mutable_failure();
    failure->set_kind(static_cast<std::uint32_t>(FailureKind::kLost));
    failure->set_message("result " + std::to_string(id) + " is not held here (freed)");
  }
  connection->send(reply);
}

}  // namespace clupy::server
