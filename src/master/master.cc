#include "master/master.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <filesystem>
#include <fstream>

#include "clupy/errors.hpp"
#include "common/auth.hpp"
#include "common/daemon.hpp"
#include "common/image_transfer.hpp"
#include "common/log.hpp"
#include "common/malloc_tuning.hpp"
#include "common/version.hpp"
#include "master/standby.hpp"

namespace clupy::master {

namespace {
auto log() { return common::logger("master"); }
}  // namespace

Master::Master(asio::io_context& io, common::MasterConfig config)
    : io_(io),
      config_((common::validate(config), std::move(config))),
      acceptor_(io),
      maintenance_timer_(io),
      images_(config_.data_dir + "/images", config_.image_store_size),
      scheduler_(registry_, *this,
                 SchedulerConfig{
                     static_cast<std::uint32_t>(config_.default_server_request_count),
                     static_cast<std::uint32_t>(config_.client_window), config_.default_retries,
                     static_cast<std::uint32_t>(config_.assign_ahead), config_.lineage_memory}),
      job_packages_({scheduler_, registry_,
                     [this](SessionId session, const wire::Envelope& message) {
                       send_to(session, message);
                     }}),
      started_at_(Clock::now()) {
  manifest_ = std::make_unique<ManifestKeeper>(config_.dependency_file, config_.data_dir);
  telemetry_ = std::make_unique<Telemetry>(
      TelemetryConfig{TaskOutputLimits{static_cast<std::size_t>(config_.task_output_lines),
                                       static_cast<std::size_t>(config_.task_output_tasks_per_job),
                                       config_.task_output_bytes},
                      config_.data_dir + "/dashboard/history.json"});
  scheduler_.set_observer(telemetry_.get());
  scheduler_.set_next_job_id(telemetry_->next_job_id());
  if (!config_.allow_no_auth) {
    common::MasterToken resolved = common::resolve_master_token(config_.token_file);
    token_ = std::move(resolved.token);
    log()->info("cluster token from {}", resolved.source);
  } else {
    log()->warn("authentication is off (allow_no_auth): anyone on this machine can connect");
  }
  if (config_.tls.enabled) tls_ = common::make_acceptor_tls(config_.tls);
  if (config_.store.enabled) {
    store_ = std::make_unique<StoreService>(config_.store, config_.data_dir);
    services_.set_store_url(store_->client_options().redis_url);
    services_.set_store_key_prefix(store_->client_options().key_prefix);
    services_.set_store_chunk_size(store_->client_options().chunk_size);
    log()->info("file store at {}", services_.store_url());
  }
  if (config_.coordination.enabled) {
    services_.set_coordination_connect(config_.coordination.connect);
    services_.set_coordination_session_timeout_ms(
        static_cast<std::uint32_t>(config_.coordination.session_timeout.count()));
    services_.set_coordination_digest_auth(config_.coordination.digest_auth);
  }
}

Master::~Master() = default;

void Master::start() {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(config_.bind, ec);
  if (ec) throw ConfigError("bind address '" + config_.bind + "' is not an IP address");
  tcp::endpoint endpoint(address, static_cast<unsigned short>(config_.port));
  // Each step reports through `ec`, so that any failure is the documented ConfigError.
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) common::set_close_on_exec(acceptor_.native_handle());
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw ConfigError("cannot listen on " + config_.bind + ":" + std::to_string(config_.port) +
                      ": " + ec.message());
  const auto bound = acceptor_.local_endpoint();
  log()->info("master {} listening on {}:{} ({}{})", common::library_version(),
              bound.address().to_string(), bound.port(), tls_ ? "TLS" : "plain TCP",
              token_ ? ", token required" : ", no authentication");
  asio::co_spawn(io_, accept_loop(), asio::detached);
  service_keeper_ = make_service_keeper();
  published_ = std::make_unique<ServiceHost>(ServiceHost::Env{
      io_, scheduler_, registry_, images_, token_, config_.bind,
      [this](SessionId session, const wire::Envelope& message) { send_to(session, message); },
      job_packages_, service_keeper_.get()});
  restore_services();
  if (config_.http_port > 0)
    http_ = std::make_unique<common::HttpServer>(
        io_, config_.bind, config_.http_port,
        [this](const common::HttpRequest& request, common::HttpResponse& response) {
          http_request(request, response);
        });
  if (http_)
    log()->info("HTTP: the dashboard, /status and /metrics on http://{}:{}/", config_.bind,
                http_->port());
  started_ = true;
  schedule_maintenance();
  if (!config_.port_file.empty()) {
    // Last, so a watcher that sees the file finds the HTTP side listening too. Written
    // atomically, so it never reads a half-written number.
    const std::string tmp = config_.port_file + ".tmp";
    std::ofstream(tmp) << bound.port() << "\n";
    std::filesystem::rename(tmp, config_.port_file);
  }
}

void Master::stop() {
  if (stopping_) return;
  stopping_ = true;
  log()->info("master stopping");
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  maintenance_timer_.cancel();
  if (http_) http_->stop();
  if (published_) published_->stop();
  if (started_) {
    telemetry_->set_next_job_id(scheduler_.next_job_id());
    telemetry_->save();
  }
  std::vector<std::shared_ptr<common::Connection>> connections;  // closing calls back
  for (auto& [id, session] : sessions_) connections.push_back(session->connection);
  for (auto& connection : connections) connection->close("master shutting down");
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
    if (handshaking_ >= static_cast<std::size_t>(config_.max_pending_connections)) {
      // Each connection still in its handshake may hold up to kHandshakeMaxFrameSize for its
      // deadline: capping their number bounds what unauthenticated peers can make us hold.
      if (!refusing_pending_)
        log()->warn(
            "{} connections are in their handshake (max_pending_connections): refusing "
            "new connections until some finish",
            handshaking_);
      refusing_pending_ = true;
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    refusing_pending_ = false;
    std::optional<common::Transport> transport;
    if (tls_)
      transport.emplace(std::move(socket), *tls_);
    else
      transport.emplace(std::move(socket));
    auto connection =
        std::make_shared<common::Connection>(std::move(*transport), config_.max_frame_size);
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
  sessions_.emplace(id, std::make_unique<Session>()).first->second->connection = connection;
  common::PeerIdentity peer;
  // A named object, not a braced temporary: GCC 12 destroys temporaries inside a co_await
  // expression twice.
  const common::AcceptorAuth auth{token_, "master", services_, fencing_token_};
  // Until the peer has proved the token it may send only small frames, and it counts against
  // max_pending_connections.
  connection->limit_incoming_frames(
      std::min(common::kHandshakeMaxFrameSize, config_.max_frame_size));
  ++handshaking_;
  try {
    if (tls_) co_await connection->transport().start(true);
    peer = co_await common::accept_handshake(*connection, auth);
  } catch (const std::exception& e) {
    --handshaking_;
    log()->warn("closing connection from {}: {}", connection->peer(),
                common::printable(e.what(), 512));
    connection->close(e.what());
    sessions_.erase(id);
    co_return;
  }
  --handshaking_;
  connection->limit_incoming_frames(config_.max_frame_size);
  deadline.cancel();
  if (stopping_ || !connection->is_open()) {
    sessions_.erase(id);
    co_return;
  }
  auto listed = sessions_.find(id);
  if (listed == sessions_.end()) co_return;
  listed->second->peer = peer;
  listed->second->last_message = Clock::now();
  log()->debug("session {} from {} ({}, {})", id, connection->peer(), peer.name,
               common::describe(peer.build));
  connection->start([this, id](wire::Envelope& message) { handle_guarded(id, message); },
                    [this, id](const std::string& reason) { on_session_closed(id, reason); });
}

void Master::handle_guarded(std::uint64_t session_id, wire::Envelope& message) {
  try {
    handle(session_id, message);
  } catch (const std::exception& e) {
    // A bug a peer's message reached: that peer loses its connection, the master stays up.
    auto it = sessions_.find(session_id);
    log()->error("closing session {}: handling its message (body case {}) failed: {}", session_id,
                 static_cast<int>(message.body_case()), e.what());
    if (it != sessions_.end()) it->second->connection->close("internal error");
  }
}

void Master::handle(std::uint64_t session_id, wire::Envelope& message) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  Session& session = *it->second;
  const auto now = Clock::now();
  session.last_message = now;
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
      if (!common::is_printable(description.server_id(), 128)) {
        reply.mutable_error()->set_message(
            "a server id is at most 128 bytes without control characters");
        session.connection->send(reply);
        session.connection->close_after_flush("malformed server id");
        return;
      }
      // Shown by clupy info and /status: bounded and escaped once, here.
      description.set_hostname(common::printable(description.hostname(), 256));
      description.set_address(common::printable(description.address(), 256));
      if (description.labels_size() > 64 ||
          std::any_of(description.labels().begin(), description.labels().end(),
                      [](const auto& label) {
                        return !common::is_printable(label.first, 128) ||
                               !common::is_printable(label.second, 256);
                      })) {
        reply.mutable_error()->set_message(
            "labels: at most 64, keys up to 128 and values up to 256 bytes, without control "
            "characters");
        session.connection->send(reply);
        session.connection->close_after_flush("malformed labels");
        return;
      }
      const ServerRecord* known = registry_.find(description.server_id());
      auto holder = known != nullptr && known->connection_id != session_id
                        ? sessions_.find(known->connection_id)
                        : sessions_.end();
      if (holder != sessions_.end() && known->description.pid() == description.pid() &&
          known->description.hostname() == description.hostname()) {
        // The same server process on a new connection (its old one broke without our noticing):
        // the old connection goes, and its tasks are rerun (the server abandoned them).
        Session& old = *holder->second;
        lose_server(old);
        old.server_id.clear();  // so closing it does not take the new registration along
        old.connection->close("the server reconnected");
        holder = sessions_.end();
      }
      if (holder != sessions_.end()) {
        // Another live connection holds this id: taking it over would cut that server out of
        // scheduling while it still runs (and hand this peer its tasks). It may replace it only
        // once the other connection is gone.
        const std::string refusal = "server id '" + description.server_id() +
                                    "' is in use by a live server on " +
                                    common::printable(known->description.hostname(), 256) +
                                    " (pid " + std::to_string(known->description.pid()) +
                                    "); give this server another server_id, or stop that one first";
        log()->warn("refusing a server from {}: {}", session.connection->peer(), refusal);
        reply.mutable_error()->set_message(refusal);
        session.connection->send(reply);
        session.connection->close_after_flush("duplicate server id");
        return;
      }
      if (!session.server_id.empty() && session.server_id != description.server_id())
        lose_server(session);
      const bool added = registry_.register_server(description, session_id, now);
      session.server_id = description.server_id();
      scheduler_.server_available(description.server_id(), session_id);
      update_hold(description.server_id());
      log()->info("server {} {} ({} at {}, {} slots)", description.server_id(),
                  added ? "registered" : "re-registered", description.hostname(),
                  description.address(), description.capacity());
      reply.mutable_server_registered()->set_server_id(description.server_id());
      session.connection->send(reply);
      announce_manifest(session);
      // After ServerRegistered: judging may ask for the server's offer, which a server sends
      // only once registered; open jobs' packages are asked for as well.
      judge_server(description.server_id(), false);
      job_packages_.server_registered(description.server_id(), session_id);
      scheduler_.dispatch();
      return;
    }
    case wire::Envelope::kHeartbeat: {
      if (session.peer.role != wire::ROLE_SERVER) break;
      // A server speaks only for the id it registered on this connection.
      if (message.heartbeat().server_id() != session.server_id ||
          !registry_.heartbeat(message.heartbeat().server_id(), message.heartbeat().busy_slots(),
                               now)) {
        // Expired while the server was unreachable: ask it to register again.
        reply.mutable_error()->set_message("unknown server id; register again");
        session.connection->send(reply);
      }
      return;
    }
    case wire::Envelope::kUnregisterServer: {
      if (session.peer.role != wire::ROLE_SERVER) break;
      if (message.unregister_server().server_id() != session.server_id) break;
      lose_server(session);
      if (registry_.unregister(message.unregister_server().server_id()))
        log()->info("server {} unregistered", message.unregister_server().server_id());
      session.server_id.clear();
      scheduler_.dispatch();
      return;
    }
    case wire::Envelope::kDrainServer: {
      if (session.peer.role != wire::ROLE_SERVER || session.server_id.empty() ||
          message.drain_server().server_id() != session.server_id)
        break;
      if (scheduler_.server_draining(session.server_id, message.drain_server().handed_back()))
        log()->info("server {} is draining; it handed back {} task(s)", session.server_id,
                    message.drain_server().handed_back_size());
      scheduler_.dispatch();
      return;
    }
    case wire::Envelope::kTaskResults: {
      if (session.peer.role != wire::ROLE_SERVER || session.server_id.empty()) break;
      scheduler_.results(session.server_id, *message.mutable_task_results());
      scheduler_.dispatch();
      return;
    }
    case wire::Envelope::kTaskOutput: {
      if (session.peer.role != wire::ROLE_SERVER) break;
      // Only for a task assigned to this connection's server: anything else is dropped.
      if (session.server_id.empty()) return;
      if (auto owner = scheduler_.owner_of(message.task_output().task_id(), session.server_id)) {
        if (ServiceHost::is_service_session(owner->first)) {
          if (published_) published_->output(owner->first, message.task_output().text());
          return;
        }
        telemetry_->task_output(scheduler_.job_of(owner->first), owner->second,
                                message.task_output().is_stderr(), message.task_output().text());
        message.mutable_task_output()->set_task_id(owner->second);
        message.mutable_task_output()->set_server_id(session.server_id);
        send_to(owner->first, message);
      }
      return;
    }
    case wire::Envelope::kDependencyReport: {
      if (session.peer.role != wire::ROLE_SERVER) break;
      if (session.server_id.empty()) return;  // sent before its registration was handled
      dependency_report(session, message.dependency_report());
      return;
    }
    case wire::Envelope::kServerOffer: {
      if (session.peer.role != wire::ROLE_SERVER) break;
      if (session.server_id.empty()) return;
      server_offer(session, std::move(*message.mutable_server_offer()));
      return;
    }
    case wire::Envelope::kJobPackagesReport: {
      if (session.peer.role != wire::ROLE_SERVER) break;
      job_packages_report(session, message.job_packages_report());
      return;
    }
    case wire::Envelope::kFetchImage: {
      if (session.peer.role != wire::ROLE_SERVER) break;
      send_image(session, message.fetch_image().image_sha256());
      return;
    }
    case wire::Envelope::kOpenJob: {
      if (session.peer.role != wire::ROLE_CLIENT) break;
      open_job(session_id, session, message);
      return;
    }
    case wire::Envelope::kImageChunk: {
      if (session.peer.role != wire::ROLE_CLIENT || session.image_sha256.empty()) break;
      store_chunk(session_id, session, message.image_chunk());
      return;
    }
    case wire::Envelope::kSubmitTasks: {
      if (session.peer.role != wire::ROLE_CLIENT || session.image_sha256.empty()) break;
      route_service_calls(session_id, *message.mutable_submit_tasks());
      scheduler_.submit(session_id, *message.mutable_submit_tasks(), now);
      scheduler_.dispatch();
      return;
    }
    case wire::Envelope::kCancelTasks: {
      if (session.peer.role != wire::ROLE_CLIENT) break;
      scheduler_.cancel(session_id, message.cancel_tasks());
      scheduler_.dispatch();
      return;
    }
    case wire::Envelope::kReleaseResults: {
      if (session.peer.role != wire::ROLE_CLIENT) break;
      scheduler_.release_results(session_id, message.release_results());
      return;
    }
    case wire::Envelope::kFetchResult: {
      if (session.peer.role != wire::ROLE_CLIENT) break;
      fetch_for_client(session_id, message.request_id(), message.fetch_result().task_id());
      return;
    }
    case wire::Envelope::kPushedCall: {
      if (session.peer.role != wire::ROLE_CLIENT) break;
      relay_pushed_call(session_id, message);
      return;
    }
    case wire::Envelope::kResultBytes: {
      if (session.peer.role != wire::ROLE_SERVER) break;
      relay_result(session_id, message);
      return;
    }
    case wire::Envelope::kKeepAlive: {
      scheduler_.client_seen(session_id, now);
      return;
    }
    case wire::Envelope::kPublishService: {
      if (session.peer.role != wire::ROLE_CLIENT || session.image_sha256.empty()) break;
      published_->publish(session_id, message.request_id(), session.image_sha256,
                          session.image_name, message.publish_service());
      return;
    }
    case wire::Envelope::kUnpublishService: {
      if (session.peer.role != wire::ROLE_ADMIN && session.peer.role != wire::ROLE_CLIENT) break;
      published_->unpublish(session_id, message.request_id(), message.unpublish_service().name());
      return;
    }
    case wire::Envelope::kLogsRequest: {
      if (session.peer.role != wire::ROLE_ADMIN && session.peer.role != wire::ROLE_CLIENT) break;
      logs_request(message.logs_request(), reply);
      session.connection->send(reply);
      return;
    }
    case wire::Envelope::kServicesRequest: {
      if (session.peer.role != wire::ROLE_ADMIN && session.peer.role != wire::ROLE_CLIENT) break;
      published_->list(*reply.mutable_services_reply());
      session.connection->send(reply);
      return;
    }
    case wire::Envelope::kRegistryRequest: {
      auto* registry = reply.mutable_registry_reply();
      registry_.fill(*registry, now);
      registry->set_master_time_ms(to_epoch_ms(now, now));
      registry->set_master_started_ms(to_epoch_ms(started_at_, now));
      registry->set_master_version(common::library_version());
      registry->set_queued_tasks(scheduler_.queued());
      registry->set_running_tasks(scheduler_.running());
      registry->set_clients(static_cast<std::uint32_t>(scheduler_.clients()));
      registry->set_dependency_manifest_version(manifest_->version());
      registry->set_dependency_manifest_error(manifest_->last_error());
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

void Master::route_service_calls(std::uint64_t session_id, wire::SubmitTasks& tasks) {
  auto* list = tasks.mutable_tasks();
  bool any = false;
  for (const auto& t : *list) any = any || !t.options().service().empty();
  if (!any) return;
  // Calls of a published service's exports run in that service's job, not this client's.
  int kept = 0;
  for (int i = 0; i < list->size(); ++i) {
    auto& t = *list->Mutable(i);
    if (t.options().service().empty()) {
      if (kept != i) list->SwapElements(kept, i);
      ++kept;
    } else {
      published_->client_call(session_id, t);
    }
  }
  while (list->size() > kept) list->RemoveLast();
}

void Master::on_session_closed(std::uint64_t session_id, const std::string& reason) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  Session& session = *it->second;
  log()->debug("session {} ({}) closed: {}", session_id, session.peer.name, reason);
  if (session.peer.role == wire::ROLE_SERVER) {
    registry_.connection_lost(session_id);
    lose_server(session);
    fail_relays_through(session_id);
  }
  if (session.peer.role == wire::ROLE_CLIENT) {
    job_packages_.close(session_id);
    const auto job = scheduler_.client_gone(session_id);
    if (job) telemetry_->job_ended(*job);
    if (job && store_) store_->job_ended(std::to_string(*job));
    if (session.image_pinned) images_.unpin(session.image_sha256);
    release_job_libraries(session);
  }
  // An upload this client began and did not finish is discarded, so the next run uploads the
  // image again; jobs waiting for it are told (after this session is gone).
  const std::vector<std::string> interrupted = images_.abort_uploads_of(session_id);
  const std::string name = session.peer.name;
  sessions_.erase(it);
  for (const std::string& sha : interrupted) {
    log()->warn("upload of image {} by {} interrupted ({}): discarded", hex_of(sha).substr(0, 16),
                name, reason);
    image_unavailable(sha, "the upload of this program's image by another run of it (" + name +
                               ") was interrupted; run the program again to upload it");
    library_unavailable(sha, "its upload by " + name + " was interrupted (" + reason +
                                 "); run the program again to upload it");
  }
  scheduler_.dispatch();
}

void Master::lose_server(Session& session) {
  if (session.server_id.empty()) return;
  job_packages_.server_lost(session.server_id);
  // Its tasks are rerun elsewhere now rather than after the TTL: a server whose connection is
  // gone cannot report results any more.
  scheduler_.server_lost(session.server_id);
}

void Master::send_to(SessionId session, const wire::Envelope& message) {
  auto it = sessions_.find(session);
  if (it != sessions_.end()) it->second->connection->send(message);
}

void Master::send_to(SessionId session, wire::Envelope&& message) {
  auto it = sessions_.find(session);
  if (it != sessions_.end()) it->second->connection->send(std::move(message));
}

void Master::assign(SessionId server, wire::AssignTasks& tasks) {
  if (leads_ && !leads_()) {
    log()->error("no longer the elected master: dropping {} assignment(s) and stopping",
                 tasks.tasks_size());
    asio::post(io_, [this] { stop(); });
    return;
  }
  // Swapped in and back out (pointer swaps), so the scheduler refills the same messages. Sent
  // as an rvalue: large calls are moved out into frame attachments (the items stay, emptied).
  assign_envelope_.mutable_assign_tasks()->Swap(&tasks);
  assign_envelope_.mutable_assign_tasks()->set_fencing_token(fencing_token_);
  send_to(server, std::move(assign_envelope_));
  assign_envelope_.mutable_assign_tasks()->Swap(&tasks);
}

void Master::cancel(SessionId server, wire::CancelAssignments&& tasks) {
  wire::Envelope message;
  *message.mutable_cancel_assignments() = std::move(tasks);
  send_to(server, message);
}

void Master::deliver(SessionId client, wire::TaskResults& results) {
  if (ServiceHost::is_service_session(client)) {
    if (published_) published_->deliver(client, results);
    return;
  }
  deliver_envelope_.mutable_task_results()->Swap(&results);
  send_to(client, std::move(deliver_envelope_));
  deliver_envelope_.mutable_task_results()->Swap(&results);
}

void Master::open_job(std::uint64_t session_id, Session& session, wire::Envelope& message) {
  const auto& job = message.open_job();
  wire::Envelope reply;
  reply.set_request_id(message.request_id());
  if (job.image_sha256().size() != 32) {
    reply.mutable_error()->set_message("OpenJob needs the image's 32-byte SHA-256");
    session.connection->send(reply);
    session.connection->close_after_flush("malformed OpenJob");
    return;
  }
  if (!session.image_sha256.empty()) {
    // Its queued tasks were submitted for the first job's image: one job per connection.
    reply.mutable_error()->set_message(
        "this connection has a job open already (one per connection)");
    session.connection->send(reply);
    session.connection->close_after_flush("second OpenJob");
    return;
  }
  if (job.image_size() > images_.max_bytes()) {
    // It could never be stored (or would evict itself): say why now, not as a lost image later.
    reply.mutable_error()->set_message(
        "the program image is " + std::to_string(job.image_size()) +
        " bytes, more than the master's image_store_size (" + std::to_string(images_.max_bytes()) +
        " bytes); raise image_store_size in the master's configuration");
    session.connection->send(reply);
    session.connection->close_after_flush("image too large");
    return;
  }
  session.image_sha256 = job.image_sha256();
  // Logged, listed as a reservation holder and (the image name) a worker's argv[0] on servers:
  // bounded and escaped once, here.
  const std::string client_name = common::printable(job.client_name(), 128);
  const std::string image_name = common::printable(job.image_name(), 128);
  session.image_name = image_name;
  const bool ready = images_.has(job.image_sha256());
  session.image_pinned = ready;
  if (ready) images_.pin(job.image_sha256());
  // The first job that needs the image uploads it; jobs opened during its upload wait for it.
  const bool need = !ready && !images_.uploading(job.image_sha256());
  if (need) {
    if (auto refused = images_.begin_upload(job.image_sha256(), job.image_size(), session_id)) {
      reply.mutable_error()->set_message(*refused);
      session.connection->send(reply);
      session.connection->close_after_flush("image refused");
      return;
    }
  }
  const std::uint64_t job_id = scheduler_.open_job(session_id, client_name, job.image_sha256(),
                                                   image_name, ready, Clock::now());
  if (session.peer.build.protocol_minor() >= common::kHeldResultsMinor)
    scheduler_.set_hold_threshold(session_id, config_.result_threshold);
  log()->info("job {} opened by {} ({}, image {}{})", job_id, client_name, image_name,
              hex_of(job.image_sha256()).substr(0, 16), need ? ", uploading" : "");
  auto* opened = reply.mutable_job_opened();
  opened->set_job_id(job_id);
  opened->set_need_image(need);
  opened->set_window(static_cast<std::uint32_t>(config_.client_window));
  opened->set_keepalive_interval_ms(
      static_cast<std::uint32_t>(std::max<std::int64_t>(100, config_.reservation_ttl.count() / 3)));
  if (session.peer.build.protocol_minor() >= common::kPushedCallsMinor)
    opened->set_push_threshold(config_.push_threshold);
  if (job.packages_size() > 0 || job.libraries_size() > 0) {
    if (auto refused = open_job_packages(session_id, session, job_id, job); !refused.empty()) {
      log()->warn("job {} of {} refused: {}", job_id, client_name, refused);
      reply.clear_job_opened();
      reply.mutable_error()->set_message(refused);
      session.connection->send(reply);
      session.connection->close_after_flush("job refused");
      return;
    }
  }
  if (job.has_needs()) {
    session.needs = std::make_unique<wire::ProgramNeeds>(job.needs());
    *opened->mutable_verdicts() = judge_all(session_id, session);
  }
  // Servers read their offers on demand (a second or so) and install a job's packages (up to
  // install_timeout): init waits for both, so that it learns of every server that cannot run
  // the program before it returns.
  const bool wait_for_offers = job.has_needs() && !offers_known();
  const bool wait_for_packages = !job_packages_.settled(session_id) || session.deferred;
  if (wait_for_offers || wait_for_packages) {
    session.pending_opened = std::make_unique<wire::Envelope>(std::move(reply));
    session.pending_until =
        Clock::now() + std::chrono::seconds(10) +
        (wait_for_packages ? manifest_->manifest().install_timeout : std::chrono::milliseconds(0));
    return;
  }
  send_job_opened(session_id, session, std::move(reply));
}

void Master::store_chunk(std::uint64_t session_id, Session& session,
                         const wire::ImageChunk& chunk) {
  if (session.library_uploads.contains(chunk.image_sha256())) {
    library_chunk(session_id, chunk);
    return;
  }
  if (chunk.image_sha256() != session.image_sha256) return;
  auto outcome = images_.add_chunk(chunk.image_sha256(), session_id, chunk.offset(), chunk.data(),
                                   chunk.last());
  if (!outcome) return;
  if (!outcome->empty()) {
    log()->error("upload of image {} from session {} failed: {}",
                 hex_of(chunk.image_sha256()).substr(0, 16), session_id, *outcome);
    image_unavailable(chunk.image_sha256(), *outcome);
  } else {
    for (auto& [id, s] : sessions_) {
      if (s->image_sha256 != chunk.image_sha256() || s->image_pinned) continue;
      images_.pin(s->image_sha256);
      s->image_pinned = true;
    }
    scheduler_.image_ready(chunk.image_sha256());
  }
  scheduler_.dispatch();
}

void Master::image_unavailable(const std::string& sha256, const std::string& reason) {
  // Every job waiting for the image hears why, and its tasks (queued and later ones) fail.
  wire::Envelope failed;
  failed.mutable_image_failed()->set_image_sha256(sha256);
  failed.mutable_image_failed()->set_reason(reason);
  for (auto& [id, s] : sessions_)
    if (s->image_sha256 == sha256 && !s->image_pinned) s->connection->send(failed);
  scheduler_.image_failed(sha256, reason);
}

void Master::send_image(Session& session, const std::string& sha256) {
  if (sha256.size() == 32 && images_.has(sha256) &&
      common::send_image(*session.connection, images_.path_of(sha256), sha256))
    return;
  // A library of the dependency manifest travels the same way.
  if (auto library = manifest_->library_file(sha256);
      library && common::send_image(*session.connection, *library, sha256))
    return;
  wire::Envelope failed;
  failed.mutable_image_failed()->set_image_sha256(sha256);
  failed.mutable_image_failed()->set_reason("the master does not have this image");
  session.connection->send(failed);
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
  const auto now = Clock::now();
  close_idle_sessions(now);
  for (const auto& id : registry_.expire(now, config_.registration_ttl)) {
    log()->info("server {} dropped: no heartbeat for more than {} ms", id,
                config_.registration_ttl.count());
    scheduler_.server_lost(id);
    job_packages_.server_lost(id);
  }
  if (published_) published_->maintain(now);
  scheduler_.expire_reservations(now, config_.reservation_ttl);
  scheduler_.dispatch();
  if (store_) store_->maintain(now);
  telemetry_->set_next_job_id(scheduler_.next_job_id());
  telemetry_->tick(to_epoch_ms(now, now), scheduler_.counters().submitted, scheduler_.running(),
                   scheduler_.queued());
  if (manifest_->reload_if_changed()) manifest_changed();
  release_pending_jobs(now);
}

void Master::close_idle_sessions(Clock::time_point now) {
  if (config_.idle_timeout.count() == 0) return;
  std::vector<std::shared_ptr<common::Connection>> idle;
  for (const auto& [id, session] : sessions_)
    // Sessions still in their handshake (no last_message yet) have their own deadline.
    if (session->last_message != Clock::time_point{} &&
        now - session->last_message > config_.idle_timeout)
      idle.push_back(session->connection);
  for (auto& connection : idle) {
    log()->warn("closing connection from {}: no message for {} ms (idle_timeout)",
                connection->peer(), config_.idle_timeout.count());
    connection->close("idle for longer than idle_timeout");
  }
}

int run_master(const common::MasterConfig& config) {
  // A daemon process of its own: calls pass through it. Its task tables grow past 4 MiB.
  common::tune_malloc_for_payloads();  // its task tables map their own memory (TableAllocator)
  asio::io_context io(1);
  Master master(io, config);
  // SIGHUP reads the dependency manifest again (as the file changing does).
  asio::signal_set hangup(io, SIGHUP);
  std::function<void()> on_hangup = [&] {
    hangup.async_wait([&](boost::system::error_code ec, int) {
      if (ec) return;
      master.reload_dependencies("SIGHUP");
      on_hangup();
    });
  };
  on_hangup();
  if (!config.coordination.enabled) {
    master.start();
    common::run_until_stopped(io, [&] {
      hangup.cancel();
      master.stop();
    });
    log()->info("master stopped");
    return 0;
  }
  // A standby: bind nothing until elected; stop for good when leadership is lost (the process
  // exits 75 so a supervisor restarts it as a standby). Losing it cancels the wait for
  // SIGINT/SIGTERM too: a pending signal wait would keep io.run() from ever returning.
  asio::signal_set terminate(io, SIGINT, SIGTERM);
  bool lost = false;
  std::unique_ptr<MasterElection> election;
  MasterElection::Callbacks callbacks;
  callbacks.on_elected = [&](std::int64_t token) {
    asio::post(io, [&, token] {
      master.set_fencing_token(token);
      master.start();
      const std::string host = MasterElection::advertised_host(config.coordination, config.bind);
      if (!election->publish(host, master.local_endpoint().port())) return;  // on_lost follows
      log()->info("elected master (fencing token {}), published {}:{}", token, host,
                  master.local_endpoint().port());
    });
  };
  callbacks.on_lost = [&](coord::LossReason) {
    asio::post(io, [&] {
      lost = true;
      hangup.cancel();
      terminate.cancel();
      master.stop();
    });
  };
  election = std::make_unique<MasterElection>(config.coordination,
                                              MasterElection::default_candidate(), callbacks);
  master.set_leadership([&] { return election->is_leader(); });
  election->start();
  log()->info("standby master: waiting to be elected at {} {}", config.coordination.connect,
              config.coordination.election_path);
  terminate.async_wait([&](boost::system::error_code ec, int) {
    if (ec) return;
    hangup.cancel();
    master.stop();
  });
  io.run();
  election->stop();  // after the master stopped dispatching
  log()->info("master stopped{}", lost ? " (leadership lost)" : "");
  return lost ? 75 : 0;
}

}  // namespace clupy::master
