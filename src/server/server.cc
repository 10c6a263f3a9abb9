#include "server/server.hpp"

#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <filesystem>
#include <thread>

#include "base/hex.hpp"
#include "clupy/errors.hpp"
#include "common/auth.hpp"
#include "common/daemon.hpp"
#include "common/dial.hpp"
#include "common/handshake.hpp"
#include "common/log.hpp"
#include "common/malloc_tuning.hpp"
#include "common/version.hpp"
#include "coord/cluster_link.hpp"
#include "store/cluster_link.hpp"

namespace clupy::server {

namespace {
auto log() { return common::logger("server"); }

// What workers find in their environment: the cluster's store and coordination service, as the
// master announced them, so tasks reach what the program that submitted them reaches.
std::vector<std::string> worker_environment(const wire::ClusterServices& services) {
  std::vector<std::string> environment;
  if (auto store = detail::store_options_from(services.store_url(), services.store_key_prefix(),
                                              services.store_chunk_size()))
    environment = detail::store_environment(*store);
  if (auto coordination = detail::coordination_options_from(
          services.coordination_connect(), services.coordination_session_timeout_ms(),
          services.coordination_digest_auth())) {
    auto entries = detail::coordination_environment(*coordination);
    environment.insert(environment.end(), entries.begin(), entries.end());
  }
  return environment;
}
}  // namespace

ServerDaemon::ServerDaemon(asio::io_context& io, common::ServerConfig config,
                           const base::Clock& clock)
    : io_(io),
      config_(std::move(config)),
      clock_(clock),
      wake_timer_(io),
      result_release_(clock, kMaxResultDelay, kMaxHeldResults),
      result_timer_(io),
      drain_timer_(io),
      push_sweep_timer_(io) {
  common::validate(config_);
  if (common::is_zk_url(config_.master_url)) {
    locator_ = std::make_unique<common::MasterLocator>(config_.master_url, config_.coordination);
    locator_->subscribe([this](const std::optional<common::MasterLocation>&) {
      // The old master may be frozen rather than dead, our socket still open: leave it now.
      asio::post(io_, [this] {
        if (connection_ && connection_->is_open()) connection_->close("the elected master changed");
        wake_timer_.cancel();
      });
    });
  } else {
    master_ = common::parse_master_url(config_.master_url);
  }
  token_ = common::resolve_token(config_.token_file);
  server_id_ = config_.server_id.empty() ? "srv-" + base::to_hex(common::random_bytes(6))
                                         : config_.server_id;
  capacity_ = config_.capacity > 0 ? static_cast<unsigned>(config_.capacity)
                                   : std::max(1u, std::thread::hardware_concurrency());
  WorkerPool::Callbacks callbacks;
  callbacks.on_result = [this](wire::TaskResult&& result) { queue_result(std::move(result)); };
  callbacks.on_output = [this](std::uint64_t task_id, bool is_stderr, std::string text) {
    wire::Envelope output;
    output.mutable_task_output()->set_task_id(task_id);
    output.mutable_task_output()->set_is_stderr(is_stderr);
    output.mutable_task_output()->set_text(std::move(text));
    send_to_master(output);
  };
  callbacks.fetch_image = [this](const std::string& sha256) {
    wire::Envelope fetch;
    fetch.mutable_fetch_image()->set_image_sha256(sha256);
    send_to_master(fetch);
  };
  callbacks.library_directory = [this](const std::string& library_set) {
    return job_packages_->library_directory(library_set);
  };
  pool_ = std::make_unique<WorkerPool>(io_, server_id_, capacity_, config_.cache_dir,
                                       std::move(callbacks), clock_);
  deps::ServerSync::Callbacks sync;
  sync.report = [this](const wire::DependencyReport& report) {
    // Only once registered (the master takes reports from registered servers only); it
    // announces the manifest again at each registration, which re-sends the report.
    if (!registered_) return;
    wire::Envelope message;
    *message.mutable_dependency_report() = report;
    send_to_master(message);
  };
  sync.fetch_library = [this](const std::string& sha256) {
    wire::Envelope fetch;
    fetch.mutable_fetch_image()->set_image_sha256(sha256);
    send_to_master(fetch);
  };
  sync.libraries_ready = [this](const std::string& directory) {
    const bool changed = directory != library_directory_;
    library_directory_ = directory;
    update_worker_environment();
    if (changed && offers_->last()) offers_->refresh({directory});
  };
  const auto fetch_library = sync.fetch_library;
  sync.folders_in_use = [this] { return job_packages_->folders_in_use(); };
  deps_ = std::make_unique<deps::ServerSync>(io_, config_.cache_dir, std::move(sync),
                                             config_.dependency_recheck_period);
  deps::JobDependencies::Callbacks job_callbacks;
  job_callbacks.report = [this](const wire::JobPackagesReport& report) {
    if (!registered_) return;  // a new master asks again
    wire::Envelope message;
    *message.mutable_job_packages_report() = report;
    send_to_master(message);
  };
  job_callbacks.fetch_library = fetch_library;
  job_packages_ =
      std::make_unique<deps::JobDependencies>(io_, config_.cache_dir, std::move(job_callbacks));
  offers_ =
      std::make_unique<deps::OfferReader>(io_, [this](const wire::ServerOffer&) { send_offer(); });
  if (config_.http_port > 0)
    http_ = std::make_unique<common::HttpServer>(
        io_, config_.http_bind, config_.http_port,
        [this](const common::HttpRequest& request, std::string& body, std::string& type) {
          return http_get(request, body, type);
        });
  if (http_)
    log()->info("HTTP: /metrics and /healthz on http://{}:{}/", config_.http_bind, http_->port());
  held_ = std::make_unique<ResultHolder>(
      (std::filesystem::path(config_.cache_dir) / "results" / server_id_).string(),
      config_.result_memory);
  start_data_port();
}

void ServerDaemon::send_offer() {
  // Only once registered: the master takes an offer from a registered server only. One asked
  // for before then goes at registration.
  if (!registered_) {
    offer_wanted_ = true;
    return;
  }
  if (!offers_->last()) return;
  wire::Envelope message;
  *message.mutable_server_offer() = *offers_->last();
  send_to_master(message);
}

void ServerDaemon::update_worker_environment() {
  std::vector<std::string> environment = services_environment_;
  if (!library_directory_.empty()) {
    // First on the path: the manifest's libraries win over the machine's; what the server was
    // started with follows.
    const char* inherited = std::getenv("LD_LIBRARY_PATH");
    environment.push_back(
        "LD_LIBRARY_PATH=" + library_directory_ +
        (inherited != nullptr && *inherited != '\0' ? ":" + std::string(inherited) : ""));
  }
  pool_->set_worker_environment(std::move(environment));
}

bool ServerDaemon::accept_fencing_token(std::int64_t token) {
  // 0 (a master without standbys) is no exception: once a server has served an elected master,
  // a master that presents no token may be one that was deposed, or one of another set-up.
  if (token < highest_fencing_token_) return false;
  highest_fencing_token_ = token;
  return true;
}

std::string ServerDaemon::deposed_message(std::int64_t token) const {
  return "refusing master " + master_.to_string() + ": its fencing token " + std::to_string(token) +
         " is lower than " + std::to_string(highest_fencing_token_) +
         ", the token of a master elected after it (it was deposed)";
}

void ServerDaemon::send_to_master(const wire::Envelope& message) {
  if (!connection_ || !connection_->is_open()) return;
  bytes_to_master_ += message.ByteSizeLong();
  connection_->send(message);
}

void ServerDaemon::send_to_master(wire::Envelope&& message) {
  if (!connection_ || !connection_->is_open()) return;
  bytes_to_master_ += message.ByteSizeLong();
  connection_->send(std::move(message));
}

void ServerDaemon::queue_result(wire::TaskResult&& result) {
  if (!hold_thresholds_.empty()) hold_if_large(result);
  if (!pushers_.empty()) [[unlikely]]
    push_result_back(result);
  // Results produced in one turn of the event loop travel as one message, or several turns'
  // worth when more tasks are still running here (see send_results_when_due).
  *pending_results_.mutable_task_results()->add_results() = std::move(result);
  if (flush_posted_) return;
  flush_posted_ = true;
  asio::post(io_, [this] {
    flush_posted_ = false;
    send_results_when_due();
    if (draining_) stop_if_drained();
  });
}

void ServerDaemon::send_results_when_due() {
  const auto held = static_cast<std::size_t>(pending_results_.task_results().results_size());
  if (held == 0) return;
  const std::size_t unfinished = pool_->unfinished() + awaiting_calls_.size();
  const auto due = result_release_.due(held, unfinished);
  if (!due) {
    if (result_timer_armed_) {
      result_timer_armed_ = false;
      result_timer_.cancel();
    }
    send_pending_results();
    return;
  }
  if (result_timer_armed_) return;  // armed for this batch's due time already
  result_timer_armed_ = true;
  result_timer_.expires_after(*due - clock_.now());
  result_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;  // cancelled: the results left already
    result_timer_armed_ = false;
    send_results_when_due();
  });
}

void ServerDaemon::send_pending_results() {
  send_to_master(std::move(pending_results_));
  pending_results_.Clear();
  result_release_.sent();
}

ServerDaemon::~ServerDaemon() = default;

void ServerDaemon::start() { asio::co_spawn(io_, run(), asio::detached); }

void ServerDaemon::drain(std::chrono::steady_clock::time_point deadline) {
  if (stopping_) return;
  if (!draining_) {
    draining_ = true;
    auto handed_back = pool_->hand_back_unstarted();
    for (std::uint64_t id : handed_back) pushers_.erase(id);
    for (std::uint64_t id : hand_back_awaiting()) handed_back.push_back(id);
    log()->info("server {} draining: {} task(s) handed back, {} still running", server_id_,
                handed_back.size(), pool_->unfinished());
    hand_back(std::move(handed_back));
  }
  if (!drain_deadline_ || deadline < *drain_deadline_) {
    drain_deadline_ = deadline;
    drain_timer_.expires_at(deadline);
    drain_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping_) return;
      log()->warn(
          "server {}: drain deadline reached with {} task(s) running; they are rerun "
          "elsewhere",
          server_id_, pool_->unfinished());
      stop();
    });
  }
  stop_if_drained();
}

void ServerDaemon::hand_back(std::vector<std::uint64_t> task_ids) {
  wire::Envelope drain;
  drain.mutable_drain_server()->set_server_id(server_id_);
  for (std::uint64_t id : task_ids) drain.mutable_drain_server()->add_handed_back(id);
  if (registered_) send_to_master(drain);
}

void ServerDaemon::stop_if_drained() {
  if (stopping_ || pool_->unfinished() > 0) return;
  log()->info("server {} drained", server_id_);
  stop();
}

void ServerDaemon::stop() {
  if (stopping_) return;
  stopping_ = true;
  wake_timer_.cancel();
  drain_timer_.cancel();
  pool_->shutdown();
  forget_pushed_calls();
  push_sweep_timer_.cancel();
  if (data_port_) data_port_->stop();
  deps_->stop();
  locator_.reset();
  if (http_) http_->stop();
  if (connection_ && connection_->is_open()) {
    // Results already produced go out before the goodbye.
    if (registered_ && pending_results_.task_results().results_size() > 0) send_pending_results();
    if (registered_) {
      wire::Envelope goodbye;
      goodbye.mutable_unregister_server()->set_server_id(server_id_);
      connection_->send(goodbye);
    }
    connection_->close_after_flush("server stopping");
  }
  log()->info("server {} stopping", server_id_);
}

asio::awaitable<void> ServerDaemon::run() {
  bool reported_failure = false;
  while (!stopping_) {
    if (locator_) {
      if (auto where = locator_->current()) {
        master_ = common::parse_master_url(where->url);
      } else {
        if (!reported_failure) log()->warn("no master elected at {} yet", config_.master_url);
        reported_failure = true;
        wake_timer_.expires_after(config_.failure_retry_interval);
        boost::system::error_code ec;
        co_await wake_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
    }
    common::DialOptions options;
    options.address = master_;
    options.role = wire::ROLE_SERVER;
    options.token = token_;
    options.tls = config_.tls;
    options.max_frame_size = config_.max_frame_size;
    try {
      auto dialed = co_await common::dial_master(options);
      reported_failure = false;
      const auto& services = dialed.master.services;
      if (!accept_fencing_token(dialed.master.fencing_token)) {
        // A lagging ZooKeeper follower or a stale address led us to a master that was deposed.
        dialed.connection->close("deposed master");
        throw std::runtime_error(deposed_message(dialed.master.fencing_token));
      }
      services_environment_ = worker_environment(services);
      update_worker_environment();
      co_await serve_connection(std::move(dialed.connection));
    } catch (const HandshakeError& e) {
      // A refusal will not fix itself by retrying quickly, but a master upgrade or a token fix
      // might: keep trying at the retry interval, loudly.
      log()->error("master {} refused this server: {}", master_.to_string(), e.what());
    } catch (const std::exception& e) {
      if (!reported_failure)
        log()->warn("{}; retrying every {} ms", e.what(), config_.failure_retry_interval.count());
      reported_failure = true;
    }
    if (stopping_) break;
    wake_timer_.expires_after(config_.failure_retry_interval);
    boost::system::error_code ec;
    co_await wake_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> ServerDaemon::serve_connection(
    std::shared_ptr<common::Connection> connection) {
  connection_ = connection;
  registered_ = false;
  offer_wanted_ = false;  // a new master asks again
  struct Link {
    bool closed = false;
    std::string reason;
  };
  auto link = std::make_shared<Link>();
  connection->start([this](wire::Envelope& message) { handle(message); },
                    [this, link](const std::string& reason) {
                      link->closed = true;
                      link->reason = reason;
                      wake_timer_.cancel();
                    });

  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  wire::Envelope hello;
  auto* description = hello.mutable_register_server()->mutable_server();
  description->set_server_id(server_id_);
  description->set_hostname(host);
  description->set_address(std::string(host) +
                           (config_.port > 0 ? ":" + std::to_string(config_.port) : ""));
  description->set_capacity(capacity_);
  for (const auto& [k, v] : config_.labels) (*description->mutable_labels())[k] = v;
  common::fill_build_info(*description->mutable_build());
  description->set_pid(static_cast<std::uint32_t>(::getpid()));
  description->set_data_address(data_address_);
  bytes_to_master_ += hello.ByteSizeLong();
  connection->send(hello);

  while (!link->closed && !stopping_) {
    wake_timer_.expires_after(config_.registration_interval);
    boost::system::error_code ec;
    co_await wake_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (link->closed || stopping_) break;
    wire::Envelope beat;
    beat.mutable_heartbeat()->set_server_id(server_id_);
    beat.mutable_heartbeat()->set_busy_slots(pool_->busy());
    bytes_to_master_ += beat.ByteSizeLong();
    connection->send(beat);
  }
  if (!stopping_) {
    log()->warn("lost the master at {}: {}", master_.to_string(), link->reason);
    // A new master knows nothing of these tasks: stop them and free the slots.
    pool_->abandon_all();
    // The master that knew of the results held here is gone; a new one knows nothing of them.
    held_->clear();
    hold_thresholds_.clear();
    forget_pushed_calls();
    deps_->connection_lost();
    job_packages_->connection_lost();
    pending_results_.Clear();
    result_release_.sent();
    if (draining_) stop();  // nothing left to finish: the new master reruns what ran here
  }
  registered_ = false;
  connection_.reset();
}

void ServerDaemon::handle(wire::Envelope& message) {
  bytes_from_master_ += message.ByteSizeLong();
  switch (message.body_case()) {
    case wire::Envelope::kServerRegistered:
      if (!registered_) ++master_connections_;
      if (!registered_)
        log()->info("registered with master {} as {} ({} slots)", master_.to_string(), server_id_,
                    capacity_);
      registered_ = true;
      if (offer_wanted_ && offers_->last()) {
        offer_wanted_ = false;
        send_offer();
      } else if ((offer_wanted_ || offer_on_registration_) && !offers_->last() &&
                 !offers_->reading()) {
        offers_->refresh({library_directory_});
      }
      if (draining_) hand_back({});  // registered again while draining: still no new tasks
      break;
    case wire::Envelope::kAssignTasks:
      if (!accept_fencing_token(message.assign_tasks().fencing_token())) {
        log()->error("{}: dropping {} assignment(s)",
                     deposed_message(message.assign_tasks().fencing_token()),
                     message.assign_tasks().tasks_size());
        if (connection_) connection_->close("deposed master");
        break;
      }
      if (draining_) {
        // Assigned before the master saw the drain: back they go.
        std::vector<std::uint64_t> ids;
        for (const auto& task : message.assign_tasks().tasks()) ids.push_back(task.task_id());
        hand_back(std::move(ids));
        break;
      }
      for (auto& task : *message.mutable_assign_tasks()->mutable_tasks()) {
        task.set_master_fencing_token(message.assign_tasks().fencing_token());
        run_assignment(std::move(task));
      }
      break;
    case wire::Envelope::kFetchResult:
      answer_fetch(message);
      break;
    case wire::Envelope::kFreeResults:
      for (std::uint64_t id : message.free_results().result_ids()) held_->free(id);
      break;
    case wire::Envelope::kCancelAssignments:
      for (std::uint64_t id : message.cancel_assignments().task_ids())
        if (!cancel_awaiting(id)) pool_->cancel(id);
      break;
    case wire::Envelope::kPushedCall:  // a program's fallback when our data port failed it
      take_pushed_call(std::move(*message.mutable_pushed_call()), nullptr);
      break;
    case wire::Envelope::kImageChunk:
      if (!deps_->library_chunk(message.image_chunk()) &&
          !job_packages_->library_chunk(message.image_chunk()))
        pool_->image_chunk(message.image_chunk());
      break;
    case wire::Envelope::kImageFailed:
      if (!deps_->library_failed(message.image_failed().image_sha256(),
                                 message.image_failed().reason()) &&
          !job_packages_->library_failed(message.image_failed().image_sha256(),
                                         message.image_failed().reason()))
        pool_->image_failed(message.image_failed().image_sha256(), message.image_failed().reason());
      break;
    case wire::Envelope::kOfferRequest:
      if (!registered_) offer_wanted_ = true;  // answered at registration
      if (offers_->reading()) break;           // sent when the read finishes
      if (offers_->last())
        send_offer();
      else
        offers_->refresh({library_directory_});
      break;
    case wire::Envelope::kDependencyManifest:
      deps_->apply(message.dependency_manifest());
      break;
    case wire::Envelope::kJobPackagesRequest:
      job_packages_->request(message.job_packages_request());
      break;
    case wire::Envelope::kError:
      // The master forgot us (TTL passed while we were cut off): register again at once.
      log()->warn("master says: {}; re-registering", message.error().message());
      if (connection_) connection_->close("re-registering");
      break;
    default:
      log()->debug("ignoring message (body case {}) from the master",
                   static_cast<int>(message.body_case()));
      break;
  }
}

int run_server(const common::ServerConfig& config) {
  common::tune_malloc_for_payloads();  // a daemon process of its own: calls pass through it
  asio::io_context io(1);
  ServerDaemon daemon(io, config);
  daemon.start();
  common::run_until_stopped(io, [&] { daemon.stop(); });
  log()->info("server stopped");
  return 0;
}

}  // namespace clupy::server
