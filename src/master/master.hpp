// The master daemon: accepts connections from servers, clients and the CLI, authenticates them,
// and keeps the server registry. One io_context thread owns everything here.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/connection.hpp"
#include "common/handshake.hpp"
#include "common/http_server.hpp"
#include "master/dependencies.hpp"
#include "master/images.hpp"
#include "master/job_packages.hpp"
#include "master/registry.hpp"
#include "master/scheduler.hpp"
#include "master/services.hpp"
#include "master/store_service.hpp"
#include "master/telemetry.hpp"

namespace clupy::master {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class Master : private Outbox {
 public:
  // Reads or creates the token file and prepares TLS. Throws clupy::ConfigError.
  Master(asio::io_context& io, common::MasterConfig config);
  ~Master() override;

  // Binds and starts accepting. Throws clupy::ConfigError when the address cannot be bound.
  void start();
  // Closes the listener and every connection; run() returns once they are gone.
  void stop();
  tcp::endpoint local_endpoint() const;
  // With standby masters: dispatching stops (and the master stops) as soon as this says the
  // master no longer leads, even before the loss is reported (fencing).
  void set_leadership(std::function<bool()> leads) { leads_ = std::move(leads); }
  // The election token this master presents at every handshake and in every AssignTasks, so
  // servers and clients that have met a later leader refuse it. Set before start().
  void set_fencing_token(std::int64_t token) { fencing_token_ = token; }
  // The HTTP side's port, 0 when it is off.
  unsigned short http_port() const { return http_ ? http_->port() : 0; }
  const Registry& registry() const { return registry_; }
  // Reads the dependency manifest again (SIGHUP); servers are told when its version changed.
  void reload_dependencies(const std::string& why);
  const ManifestKeeper& dependencies() const { return *manifest_; }

 private:
  struct Session {
    std::shared_ptr<common::Connection> connection;
    common::PeerIdentity peer;
    std::string server_id;     // servers: the id they registered
    std::string image_sha256;  // clients: their job's image
    std::string image_name;    // clients: its file name
    bool image_pinned = false;
    // Clients that sent their program's needs (dependency_check not off): compared with each
    // server's offer; servers that refuse the program get none of its tasks.
    std::unique_ptr<wire::ProgramNeeds> needs;
    // Its JobOpened, held until every connected server's offer is known (or the deadline), so
    // init learns of every server that cannot run the program before it returns.
    std::unique_ptr<wire::Envelope> pending_opened;
    Clock::time_point pending_until{};
    // Libraries its job ships (master_libraries.cc): the uploads it makes, those it waits for
    // (its own or another job's uploads), and those pinned in the store while it is open. The
    // servers are asked for its packages and libraries (`deferred`, for job `deferred_job`)
    // once none is awaited.
    std::set<std::string> library_uploads;
    std::set<std::string> libraries_awaited;
    std::vector<std::string> library_pins;
    std::unique_ptr<wire::JobPackagesRequest> deferred;
    std::uint64_t deferred_job = 0;
    // The last complete message (idle_timeout); bytes of an unfinished frame do not count.
    Clock::time_point last_message{};
  };

  // Outbox: the scheduler's messages leave through the sessions' connections.
  void assign(SessionId server, wire::AssignTasks& tasks) override;
  void cancel(SessionId server, wire::CancelAssignments&& tasks) override;
  void deliver(SessionId client, wire::TaskResults& results) override;
  void free_results(SessionId server, wire::FreeResults&& results) override;
  void answer_fetches(FetchAnswer&& answer) override;
  void call_tickets(SessionId client, wire::CallTickets& tickets) override;
  void send_to(SessionId session, const wire::Envelope& message);
  // Moves large calls and outcomes out of `message` into frame attachments.
  void send_to(SessionId session, wire::Envelope&& message);

  // Held results a client could not fetch from their servers directly (held_relay.cc): the
  // master asks the holding server over its link and passes the answer on.
  void fetch_for_client(SessionId client, std::uint64_t request_id, std::uint64_t task_id);
  // Asks the server holding a client's result for its bytes, to pass them to the client.
  void relay_fetch(SessionId client, std::uint64_t request_id, std::uint64_t task_id,
                   const HeldLocation& where);
  void relay_result(SessionId server, wire::Envelope& message);
  // The server's link closed: the fetches relayed through it are asked again (they wait for the
  // result to be made again, or fail kLost).
  void fail_relays_through(SessionId server);
  struct Relay {
    SessionId client = 0;
    std::uint64_t request_id = 0;  // the client's
    SessionId server = 0;
    std::uint64_t task_id = 0;  // the client's
  };
  std::map<std::uint64_t, Relay> relays_;  // by the request id sent to the server
  std::uint64_t next_relay_id_ = 1;
  std::uint64_t result_bytes_relayed_ = 0;
  // A pushed call the client could not push to its server (pushed_calls.cc): passed on over
  // the server's link, when its task still waits there under that ticket.
  void relay_pushed_call(SessionId client, wire::Envelope& message);
  std::uint64_t pushed_call_bytes_relayed_ = 0;

  void open_job(std::uint64_t session_id, Session& session, wire::Envelope& message);
  void store_chunk(std::uint64_t session_id, Session& session, const wire::ImageChunk& chunk);
  void send_image(Session& session, const std::string& sha256);
  // The image will not arrive (its upload failed or was interrupted): jobs waiting for it are
  // told why and their tasks fail.
  void image_unavailable(const std::string& sha256, const std::string& reason);
  void lose_server(Session& session);
  // At start (or election): opens the keeper of published services and serves again those
  // it kept (master_services.cc). Blocks while it reads ZooKeeper and fetches images.
  std::unique_ptr<ServiceKeeper> make_service_keeper() const;
  void restore_services();
  // Hands the tasks of `tasks` that name a published service to it (ServiceHost::client_call).
  void route_service_calls(std::uint64_t session_id, wire::SubmitTasks& tasks);
  // Dependencies (master_deps.cc): the manifest to one server or all, a server's report, and
  // holding servers that do not meet the manifest out of scheduling.
  void announce_manifest(Session& session);
  void manifest_changed();
  void dependency_report(Session& session, const wire::DependencyReport& report);
  void update_hold(const std::string& server_id);
  // Compares a client's program with a server's offer; refuses the server for that client's
  // tasks when it cannot run it. Fills `verdict`; returns false if the server made no offer yet.
  bool judge(SessionId client, const Session& session, const ServerRecord& server,
             wire::ServerVerdict& verdict);
  // The verdicts of every server for a client opening its job (JobOpened.verdicts).
  wire::ProgramVerdicts judge_all(SessionId client, const Session& session);
  // A server's (new) offer: judged for every client with needs, who are told.
  void server_offer(Session& server, wire::ServerOffer&& offer);
  // Judges one server for every client with needs; tells those clients when `notify`.
  void judge_server(const std::string& server_id, bool notify);
  // Sends held JobOpened replies whose servers are all judged now, or (`now` past their
  // deadline) with what is known.
  void release_pending_jobs(Clock::time_point now);
  bool offers_known() const;
  // Checks a job's own packages against the manifest's policy and starts their installs;
  // returns why the job is refused, or "".
  std::string open_job_packages(std::uint64_t session_id, Session& session, std::uint64_t job_id,
                                const wire::OpenJob& job);
  void job_packages_report(Session& server, const wire::JobPackagesReport& report);
  // Libraries shipped from a job's client (master_libraries.cc): checks them against the
  // manifest's policy, pins those the store has and asks the client for the others; returns
  // why the job is refused, or "". The servers are asked once all are stored.
  std::string open_job_libraries(std::uint64_t session_id, Session& session,
                                 const wire::OpenJob& job, wire::JobPackagesRequest& request);
  void library_chunk(std::uint64_t session_id, const wire::ImageChunk& chunk);
  // A library's upload failed or was interrupted: jobs waiting for it are refused, saying why.
  void library_unavailable(const std::string& sha256, const std::string& reason);
  // Refuses a job whose JobOpened is held, with `message`, and closes its connection.
  void refuse_pending_job(Session& session, const std::string& message);
  void release_job_libraries(Session& session);
  // Sends a JobOpened, or refuses the job when no connected server could install its packages.
  void send_job_opened(SessionId id, Session& session, wire::Envelope&& reply);
  // Every HTTP request: the dashboard's (dashboard_http.cc), else http_get's.
  void http_request(const common::HttpRequest& request, common::HttpResponse& response);
  int http_get(const common::HttpRequest& request, std::string& body, std::string& content_type);
  // Whether the request may read /status, /metrics and the dashboard (http_auth): the token as
  // a bearer, the dashboard's cookie, or (loopback, off) where it came from.
  bool http_allowed(const common::HttpRequest& request) const;
  // The dashboard's session cookie's value: derived from the token, never the token itself.
  std::string dashboard_cookie() const;
  // The dashboard's pages (dashboard_http.cc); false when `request` is not one of them.
  bool dashboard_request(const common::HttpRequest& request, common::HttpResponse& response);
  std::string dashboard_json(std::int64_t since_ms);
  std::string status_json();
  std::string metrics_text();
  // `clupy logs`: a task's kept output.
  void logs_request(const wire::LogsRequest& request, wire::Envelope& reply) const;

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(std::shared_ptr<common::Connection> connection);
  void handle(std::uint64_t session_id, wire::Envelope& message);
  // handle(), with any exception confined to that session (logged, its connection closed).
  void handle_guarded(std::uint64_t session_id, wire::Envelope& message);
  void on_session_closed(std::uint64_t session_id, const std::string& reason);
  void schedule_maintenance();
  void maintain();
  // Closes authenticated connections that sent no complete message for idle_timeout.
  void close_idle_sessions(Clock::time_point now);

  asio::io_context& io_;
  common::MasterConfig config_;
  std::optional<std::string> token_;
  std::shared_ptr<asio::ssl::context> tls_;
  tcp::acceptor acceptor_;
  asio::steady_timer maintenance_timer_;
  Registry registry_;
  ImageStore images_;
  Scheduler scheduler_;
  std::unique_ptr<common::HttpServer> http_;
  std::unique_ptr<StoreService> store_;  // when the configuration has a store: section
  // Published services kept across restarts and failovers (master_services.cc); outlives
  // published_, which hands it records.
  std::unique_ptr<ServiceKeeper> service_keeper_;
  std::unique_ptr<ServiceHost> published_;  // services published with clupy --publish
  std::unique_ptr<ManifestKeeper> manifest_;
  std::unique_ptr<Telemetry> telemetry_;  // the dashboard's figures; observes scheduler_
  JobPackages job_packages_;              // jobs' own packages (client dependency files, services)
  wire::ClusterServices services_;        // announced to every peer in the handshake
  // Hashed: every message (a heartbeat from each server every second) looks its session up,
  // in a dense table of pointers; a Session itself never moves.
  boost::unordered_flat_map<std::uint64_t, std::unique_ptr<Session>> sessions_;
  std::uint64_t next_session_id_ = 1;
  std::size_t handshaking_ = 0;    // connections that have not finished their handshake
  bool refusing_pending_ = false;  // logged once per run of refusals
  Clock::time_point started_at_;
  bool stopping_ = false;
  bool started_ = false;
  std::function<bool()> leads_;
  std::int64_t fencing_token_ = 0;
  // Reused for every AssignTasks and TaskResults sent: the batches are swapped in and out.
  wire::Envelope assign_envelope_;
  wire::Envelope deliver_envelope_;
};

// `clupy --master`: runs until SIGINT or SIGTERM. Returns the process exit code.
int run_master(const common::MasterConfig& config);

}  // namespace clupy::master
