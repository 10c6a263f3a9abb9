#include "master/master.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

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
                 SchedulerConfig{static_cast<std::uint32_t>(config_.default_server_request_count),
                                 static_cast<std::uint32_t>(config_.client_window),
                                 config_.default_retries,
                                 static_cast<std::uint32_t>(config_.assign_ahead)}),
      started_at_(Clock::now()) {
  if (!config_.allow_no_auth) {
    const std::string path =
        config_.token_file.empty() ? common::default_token_path() : config_.token_file;
    token_ = common::load_or_create_token(path);
    log()->info("cluster token in {}", path);
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
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint, ec);
  if (ec)
    throw ConfigError("cannot listen on " + config_.bind + ":" + std::to_string(config_.port) +
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
  if (config_.http_port > 0)
    http_ = std::make_unique<HttpStatus>(
        io_, config_.bind, config_.http_port,
        [this](const std::string& target, std::string& body, std::string& type) {
          return http_get(target, body, type);
        });
  schedule_maintenance();
}

void Master::stop() {
  if (stopping_) return;
  stopping_ = true;
  log()->info("master stopping");
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  maintenance_timer_.cancel();
  if (http_) http_->stop();
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
  auto listed = sessions_.find(id);
  if (listed == sessions_.end()) co_return;
  listed->second->peer = peer;
  log()->debug("session {} from {} ({}, {})", id, connection->peer(), peer.name,
               common::describe(peer.build));
  connection->start([this, id](wire::Envelope& message) { handle(id, message); },
                    [this, id](const std::string& reason) { on_session_closed(id, reason); });
}

void Master::handle(std::uint64_t session_id, wire::Envelope& message) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  Session& session = *it->second;
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
      if (!session.server_id.empty() && session.server_id != description.server_id())
        lose_server(session);
      const bool added = registry_.register_server(description, session_id, now);
      session.server_id = description.server_id();
      scheduler_.server_available(description.server_id(), session_id);
      log()->info("server {} {} ({} at {}, {} slots)", description.server_id(),
                  added ? "registered" : "re-registered", description.hostname(),
                  description.address(), description.capacity());
      reply.mutable_server_registered()->set_server_id(description.server_id());
      session.connection->send(reply);
      scheduler_.dispatch();
      return;
    }
    case wire::Envelope::kHeartbeat: {
      if (session.peer.role != wire::ROLE_SERVER) break;
      if (!registry_.heartbeat(message.heartbeat().server_id(), message.heartbeat().busy_slots(),
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
      if (auto owner = scheduler_.owner_of(message.task_output().task_id())) {
        message.mutable_task_output()->set_task_id(owner->second);
        message.mutable_task_output()->set_server_id(session.server_id);
        send_to(owner->first, message);
      }
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
    case wire::Envelope::kKeepAlive: {
      scheduler_.client_seen(session_id, now);
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
  Session& session = *it->second;
  log()->debug("session {} ({}) closed: {}", session_id, session.peer.name, reason);
  if (session.peer.role == wire::ROLE_SERVER) {
    registry_.connection_lost(session_id);
    lose_server(session);
  }
  if (session.peer.role == wire::ROLE_CLIENT) {
    if (auto job = scheduler_.client_gone(session_id); job && store_)
      store_->job_ended(std::to_string(*job));
    if (session.image_pinned) images_.unpin(session.image_sha256);
  }
  sessions_.erase(it);
  scheduler_.dispatch();
}

bool Master::http_get(const std::string& target, std::string& body, std::string& content_type) {
  if (target == "/healthz") {
    body = "ok\n";
  } else if (target == "/status") {
    body = status_json();
    content_type = "application/json";
  } else if (target == "/metrics") {
    body = metrics_text();
    content_type = "text/plain; version=0.0.4";
  } else {
    return false;
  }
  return true;
}

std::string Master::status_json() {
  const auto now = Clock::now();
  wire::RegistryReply reply;
  registry_.fill(reply, now);
  nlohmann::json servers = nlohmann::json::array();
  for (const auto& e : reply.servers()) {
    servers.push_back({{"server_id", e.server().server_id()},
                       {"hostname", e.server().hostname()},
                       {"pid", e.server().pid()},
                       {"capacity", e.server().capacity()},
                       {"busy_slots", e.busy_slots()},
                       {"registered_at_ms", e.registered_at_ms()},
                       {"last_heartbeat_ms", e.last_heartbeat_ms()},
                       {"reserved_by", e.reserved_by()},
                       {"connected", e.connected()}});
  }
  nlohmann::json out = {{"master_version", common::library_version()},
                        {"master_started_ms", to_epoch_ms(started_at_, now)},
                        {"queued_tasks", scheduler_.queued()},
                        {"running_tasks", scheduler_.running()},
                        {"clients", scheduler_.clients()},
                        {"servers", servers}};
  return out.dump(2) + "\n";
}

std::string Master::metrics_text() {
  const auto& c = scheduler_.counters();
  std::size_t slots = 0, connected = 0;
  wire::RegistryReply reply;
  registry_.fill(reply, Clock::now());
  for (const auto& e : reply.servers()) {
    slots += e.server().capacity();
    connected += e.connected();
  }
  std::string text;
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    text += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
            name + " " + std::to_string(static_cast<long long>(value)) + "\n";
  };
  metric("clupy_servers", "gauge", "Servers in the registry.",
         static_cast<double>(registry_.size()));
  metric("clupy_servers_connected", "gauge", "Servers with a live connection.",
         static_cast<double>(connected));
  metric("clupy_worker_slots", "gauge", "Worker slots of all registered servers.",
         static_cast<double>(slots));
  metric("clupy_clients", "gauge", "Clients with an open job.",
         static_cast<double>(scheduler_.clients()));
  metric("clupy_tasks_queued", "gauge", "Tasks waiting for a slot.",
         static_cast<double>(scheduler_.queued()));
  metric("clupy_tasks_running", "gauge", "Tasks assigned to servers.",
         static_cast<double>(scheduler_.running()));
  metric("clupy_tasks_submitted_total", "counter", "Tasks submitted by clients.",
         static_cast<double>(c.submitted));
  metric("clupy_tasks_succeeded_total", "counter", "Tasks that produced an outcome.",
         static_cast<double>(c.succeeded));
  metric("clupy_tasks_failed_total", "counter",
         "Tasks that crashed, timed out, were cancelled or lost.", static_cast<double>(c.failed));
  metric("clupy_tasks_rerun_total", "counter", "Tasks rerun after their server was lost.",
         static_cast<double>(c.rerun));
  metric("clupy_image_store_bytes", "gauge", "Bytes of program images on disk.",
         static_cast<double>(images_.total_bytes()));
  if (store_) {
    const StoreCounters store = store_->counters();
    metric("clupy_store_files", "gauge", "Files in the file store after the last sweep.",
           static_cast<double>(store.files));
    metric("clupy_store_bytes", "gauge", "Bytes of those files.",
           static_cast<double>(store.live_bytes));
    metric("clupy_store_reachable", "gauge", "1 if the last janitor operation reached Redis.",
           store.redis_reachable ? 1 : 0);
    metric("clupy_store_sweeps_total", "counter", "Janitor sweeps completed.",
           static_cast<double>(store.sweeps));
    metric("clupy_store_sweep_failures_total", "counter", "Janitor sweeps that failed.",
           static_cast<double>(store.sweep_failures));
    text +=
        "# HELP clupy_store_files_removed_total Files the janitor removed, by reason.\n"
        "# TYPE clupy_store_files_removed_total counter\n";
    for (const auto& [reason, count] : store.files_removed)
      text += "clupy_store_files_removed_total{reason=\"" + reason + "\"} " +
              std::to_string(count) + "\n";
  }
  return text;
}

void Master::lose_server(Session& session) {
  if (session.server_id.empty()) return;
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
  if (session.image_pinned) images_.unpin(session.image_sha256);
  session.image_sha256 = job.image_sha256();
  const bool ready = images_.has(job.image_sha256());
  session.image_pinned = ready;
  if (ready) images_.pin(job.image_sha256());
  const bool need = !ready && !images_.uploading(job.image_sha256());
  const std::uint64_t job_id = scheduler_.open_job(
      session_id, job.client_name(), job.image_sha256(), job.image_name(), ready, Clock::now());
  log()->info("job {} opened by {} ({}, image {}{})", job_id, job.client_name(), job.image_name(),
              hex_of(job.image_sha256()).substr(0, 16), need ? ", uploading" : "");
  auto* opened = reply.mutable_job_opened();
  opened->set_job_id(job_id);
  opened->set_need_image(need);
  opened->set_window(static_cast<std::uint32_t>(config_.client_window));
  opened->set_keepalive_interval_ms(
      static_cast<std::uint32_t>(std::max<std::int64_t>(100, config_.reservation_ttl.count() / 3)));
  session.connection->send(reply);
}

void Master::store_chunk(std::uint64_t session_id, Session& session,
                         const wire::ImageChunk& chunk) {
  if (chunk.image_sha256() != session.image_sha256) return;
  auto outcome =
      images_.add_chunk(chunk.image_sha256(), 0, chunk.offset(), chunk.data(), chunk.last());
  if (!outcome) return;
  if (!outcome->empty()) {
    log()->error("upload of image {} from session {} failed: {}",
                 hex_of(chunk.image_sha256()).substr(0, 16), session_id, *outcome);
    wire::Envelope failed;
    failed.mutable_image_failed()->set_image_sha256(chunk.image_sha256());
    failed.mutable_image_failed()->set_reason(*outcome);
    session.connection->send(failed);
    scheduler_.image_failed(chunk.image_sha256(), *outcome);
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

void Master::send_image(Session& session, const std::string& sha256) {
  if (sha256.size() == 32 && images_.has(sha256) &&
      common::send_image(*session.connection, images_.path_of(sha256), sha256))
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
  for (const auto& id : registry_.expire(now, config_.registration_ttl)) {
    log()->info("server {} dropped: no heartbeat for more than {} ms", id,
                config_.registration_ttl.count());
    scheduler_.server_lost(id);
  }
  scheduler_.expire_reservations(now, config_.reservation_ttl);
  scheduler_.dispatch();
  if (store_) store_->maintain(now);
}

int run_master(const common::MasterConfig& config) {
  // A daemon process of its own: calls pass through it. Its task tables grow past 4 MiB.
  common::tune_malloc_for_payloads(4 << 20);
  asio::io_context io(1);
  Master master(io, config);
  if (!config.coordination.enabled) {
    master.start();
    common::run_until_stopped(io, [&] { master.stop(); });
    log()->info("master stopped");
    return 0;
  }
  // A standby: bind nothing until elected; stop for good when leadership is lost (the process
  // exits 75 so a supervisor restarts it as a standby).
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
      master.stop();
    });
  };
  election = std::make_unique<MasterElection>(config.coordination,
                                              MasterElection::default_candidate(), callbacks);
  master.set_leadership([&] { return election->is_leader(); });
  election->start();
  log()->info("standby master: waiting to be elected at {} {}", config.coordination.connect,
              config.coordination.election_path);
  common::run_until_stopped(io, [&] { master.stop(); });
  election->stop();  // after the master stopped dispatching
  log()->info("master stopped{}", lost ? " (leadership lost)" : "");
  return lost ? 75 : 0;
}

}  // namespace clupy::master
