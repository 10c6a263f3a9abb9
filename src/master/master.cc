#include "master/master.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <filesystem>
#include <fstream>

#include "clupy/errors.hpp"
#include "common/auth.hpp"
#include "common/log.hpp"
#include "common/version.hpp"

namespace clupy::master {

namespace {
auto log() { return common::logger("master"); }
}  // namespace

Master::Master(asio::io_context& io, common::MasterConfig config)
    : io_(io), config_(std::move(config)), acceptor_(io), maintenance_timer_(io),
      started_at_(Clock::now()) {
  common::validate(config_);
  if (!config_.allow_no_auth) {
    const std::string path =
        config_.token_file.empty() ? common::default_token_path() : config_.token_file;
    token_ = common::load_or_create_token(path);
    log()->info("cluster token in {}", path);
  } else {
    log()->warn("authentication is off (allow_no_auth): anyone on this machine can connect");
  }
  if (config_.tls.enabled) tls_ = common::make_acceptor_tls(config_.tls);
}

Master::~Master() = default;

void Master::start() {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(config_.bind, ec);
  if (ec) throw ConfigError("bind address '" + config_.bind + "' is not an IP address");
  tcp::endpoint endpoint(address, static_cast<unsigned short>(config_.port));
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint, ec);
  if (ec) throw ConfigError("cannot listen on " + config_.bind + ":" + std::to_string(config_.port) +
                            ": " + ec.message());
  acceptor_.listen(asio::socket_base::max_listen_connections);
  const auto bound = acceptor_.local_endpoint();
  log()->info("master {} listening on {}:{} ({}{})", common::library_version(),
              bound.address().to_string(), bound.port(), tls_ ? "TLS" : "plain TCP",
              token_ ? ", token required" : ", no authentication");
  if (!config_.port_file.empty()) {
    // Written atomically, so a watcher never reads a half-written number.
    const std::string tmp = config_.port_file + ".tmp";
    std::ofstream(tmp) << bound.port() << "\n";
    std::filesystem::rename(tmp, config_.port_file);
  }
  asio::co_spawn(io_, accept_loop(), asio::detached);
  schedule_maintenance();
}

void Master::stop() {
  if (stopping_) return;
  stopping_ = true;
  log()->info("master stopping");
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  maintenance_timer_.cancel();
  auto sessions = sessions_;  // closing calls back into sessions_
  for (auto& [id, session] : sessions) session.connection->close("master shutting down");
}

tcp::endpoint Master::local_endpoint() const { return acceptor_.local_endpoint(); }

asio::awaitable<void> Master::accept_loop() {
  while (!stopping_) {
    tcp::socket socket(io_);
    try {
      co_await acceptor_.async_accept(socket, asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      if (e.code() == asio::error::operation_aborted || stopping_) co_return;
      // Out of file descriptors and similar: log and keep accepting rather than die.
      log()->error("accept failed: {}", e.code().message());
      continue;
    }
    std::optional<common::Transport> transport;
    if (tls_) transport.emplace(std::move(socket), *tls_);
    else transport.emplace(std::move(socket));
    auto connection = std::make_shared<common::Connection>(std::move(*transport), config_.max_frame_size);
    asio::co_spawn(io_, serve(std::move(connection)), asio::detached);
  }
}

asio::awaitable<void> Master::serve(std::shared_ptr<common::Connection> connection) {
  // A peer that connects and then says nothing (or too little) is dropped at the deadline.
  asio::steady_timer deadline(io_, config_.handshake_timeout);
  std::weak_ptr<common::Connection> weak = connection;
  deadline.async_wait([weak](boost::system::error_code ec) {
    if (auto c = weak.lock(); c && !ec) c->close("handshake timed out");
  });
  // Listed from the start, so stop() also closes connections still in their handshake.
  const std::uint64_t id = next_session_id_++;
  sessions_[id] = Session{connection, {}};
  common::PeerIdentity peer;
  // A named object, not a braced temporary: GCC 12 destroys temporaries inside a co_await
  // expression twice.
  const common::AcceptorAuth auth{token_, "master"};
  try {
    if (tls_) co_await connection->transport().start(true);
    peer = co_await common::accept_handshake(*connection, auth);
  } catch (const std::exception& e) {
    log()->warn("closing connection from {}: {}", connection->peer(), e.what());
    connection->close(e.what());
    sessions_.erase(id);
    co_return;
  }
  deadline.cancel();
  if (stopping_ || !connection->is_open()) {
    sessions_.erase(id);
    co_return;
  }
  sessions_[id].peer = peer;
  log()->debug("session {} from {} ({}, {})", id, connection->peer(), peer.name,
               common::describe(peer.build));
  connection->start([this, id](wire::Envelope& message) { handle(id, message); },
                    [this, id](const std::string& reason) { on_session_closed(id, reason); });
}

void Master::handle(std::uint64_t session_id, wire::Envelope& message) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  Session& session = it->second;
  const auto now = Clock::now();
  wire::Envelope reply;
  reply.set_request_id(message.request_id());

  switch (message.body_case()) {
    case wire::Envelope::kRegisterServer: {
      if (session.peer.role != wire::ROLE_SERVER) break;
      auto& description = *message.mutable_register_server()->mutable_server();
      if (description.server_id().empty()) {
        session.connection->close("RegisterServer without a server id");
        return;
      }
      const bool added = registry_.register_server(description, session_id, now);
      log()->info("server {} {} ({} at {}, {} slots)", description.server_id(),
                  added ? "registered" : "re-registered", description.hostname(),
                  description.address(), description.capacity());
      reply.mutable_server_registered()->set_server_id(description.server_id());
      session.connection->send(reply);
      return;
    }
    case wire::Envelope::kHeartbeat: {
      if (session.peer.role != wire::ROLE_SERVER) break;
      if (!registry_.heartbeat(message.heartbeat().server_id(), message.heartbeat().busy_slots(), now)) {
        // Expired while the server was unreachable: ask it to register again.
        reply.mutable_error()->set_message("unknown server id; register again");
        session.connection->send(reply);
      }
      return;
    }
    case wire::Envelope::kUnregisterServer: {
      if (session.peer.role != wire::ROLE_SERVER) break;
      if (registry_.unregister(message.unregister_server().server_id()))
        log()->info("server {} unregistered", message.unregister_server().server_id());
      return;
    }
    case wire::Envelope::kRegistryRequest: {
      auto* registry = reply.mutable_registry_reply();
      registry_.fill(*registry, now);
      registry->set_master_time_ms(to_epoch_ms(now, now));
      registry->set_master_started_ms(to_epoch_ms(started_at_, now));
      registry->set_master_version(common::library_version());
      session.connection->send(reply);
      return;
    }
    default:
      break;
  }
  // Anything else is a peer that does not follow the protocol: drop just that peer.
  log()->warn("closing connection from {}: unexpected message (body case {}) for its role",
              session.connection->peer(), static_cast<int>(message.body_case()));
  reply.mutable_error()->set_message("unexpected message");
  session.connection->send(reply);
  session.connection->close_after_flush("unexpected message");
}

void Master::on_session_closed(std::uint64_t session_id, const std::string& reason) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  log()->debug("session {} ({}) closed: {}", session_id, it->second.peer.name, reason);
  if (it->second.peer.role == wire::ROLE_SERVER) registry_.connection_lost(session_id);
  sessions_.erase(it);
}

void Master::schedule_maintenance() {
  maintenance_timer_.expires_after(config_.maintenance_period);
  maintenance_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || stopping_) return;
    maintain();
    schedule_maintenance();
  });
}

void Master::maintain() {
  for (const auto& id : registry_.expire(Clock::now(), config_.registration_ttl))
    log()->info("server {} dropped: no heartbeat for more than {} ms", id,
                config_.registration_ttl.count());
}

int run_master(const common::MasterConfig& config) {
  asio::io_context io(1);
  Master master(io, config);
  master.start();
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int) {
    if (!ec) master.stop();
  });
  io.run();
  log()->info("master stopped");
  return 0;
}

}  // namespace clupy::master
