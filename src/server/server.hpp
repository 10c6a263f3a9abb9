// The server daemon (`clupy --serve`): registers with the master, heartbeats, re-registers
// after the master restarts or the network breaks, and unregisters when told to stop.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/clock.hpp"
#include "clupy/errors.hpp"
#include "common/config.hpp"
#include "common/connection.hpp"
#include "common/http_server.hpp"
#include "common/master_locator.hpp"
#include "common/url.hpp"
#include "deps/job_dependencies.hpp"
#include "deps/offer_reader.hpp"
#include "deps/server_sync.hpp"
#include "server/data_port.hpp"
#include "server/result_holder.hpp"
#include "server/result_release.hpp"
#include "server/workers.hpp"

namespace clupy::server {

namespace asio = boost::asio;

class ServerDaemon {
 public:
  // Throws clupy::ConfigError (bad master URL, unreadable token file, TLS files). Time is read
  // from `clock` (when results leave, how long a pushed call or its task waits, the workers').
  ServerDaemon(asio::io_context& io, common::ServerConfig config,
               const base::Clock& clock = base::Clock::real());
  ~ServerDaemon();

  void start();
  // Sends UnregisterServer when connected, then closes; run() returns once that is written.
  void stop();
  // Stops taking tasks: hands back those not started (DrainServer), lets the running ones finish,
  // then stops as stop() does; at `deadline` at the latest, when what still runs is rerun
  // elsewhere. A second call may only bring the deadline closer. (Slurm jobs: src/slurm.)
  void drain(std::chrono::steady_clock::time_point deadline);
  bool stopping() const { return stopping_; }
  bool draining() const { return draining_; }
  // See WorkerPool::set_workers_block_sigterm.
  void set_workers_block_sigterm(bool block) { pool_->set_workers_block_sigterm(block); }
  const std::string& server_id() const { return server_id_; }
  // Whether to read what this machine offers programs as soon as it registers (a second or so
  // of dpkg-query on a thread), so the first job that checks its program need not wait; else
  // only when the master asks. Before start().
  void set_offer_on_registration(bool eager) { offer_on_registration_ = eager; }
  // Its dependencies against the master's manifest (docs/dependencies.md).
  const deps::ServerSync& dependencies() const { return *deps_; }
  // The HTTP side's port (http_port; the bound one when that was 0 in a test), 0 when off.
  unsigned short http_port() const { return http_ ? http_->port() : 0; }
  // /metrics in the Prometheus text format (docs/operations.md lists the series).
  std::string metrics_text() const;

 private:
  asio::awaitable<void> run();
  asio::awaitable<void> serve_connection(std::shared_ptr<common::Connection> connection);
  void handle(wire::Envelope& message);
  void queue_result(wire::TaskResult&& result);
  void send_results_when_due();
  void send_pending_results();  // the batch, now
  void send_to_master(const wire::Envelope& message);
  // Moves large outcomes out of `message` into frame attachments.
  void send_to_master(wire::Envelope&& message);
  // Fencing: false when `token` is lower than the highest election token seen, i.e. it comes from
  // a master deposed by a later election; otherwise remembers it. 0 (a master without standbys)
  // passes only until a higher token was seen.
  bool accept_fencing_token(std::int64_t token);
  void hand_back(std::vector<std::uint64_t> task_ids);
  void stop_if_drained();
  std::string deposed_message(std::int64_t token) const;
  // The cluster's services and the manifest's library folder, in workers' environment.
  void update_worker_environment();
  // Held results (held_inputs.cc, docs/protocol.md#held-results).
  // Starts the task, once the values of its held inputs are in its call.
  void run_assignment(wire::Assignment&& task);
  asio::awaitable<void> pull_inputs_then_run(wire::Assignment task);
  // Keeps a large successful outcome here and puts its reference in the result instead.
  void hold_if_large(wire::TaskResult& result);
  // The master asks for a held result's bytes (a client's fetch that did not reach us directly).
  void answer_fetch(const wire::Envelope& message);
  void start_data_port();
  // Starts an assignment whose call is in it (a pushed one once it arrived).
  void start_assignment(wire::Assignment&& task);
  // Pushed calls (pushed_calls.cc, docs/protocol.md#pushed-calls): an assignment whose call the
  // program pushes waits here for it (at most push_timeout; then the master is told
  // call_missing); a call may also come before its assignment and waits for it as long.
  void await_pushed_call(wire::Assignment&& task);
  // `from`: the data connection it came on (its outcome goes back on it), null when it came
  // through the master.
  void take_pushed_call(wire::PushedCall&& call, const std::shared_ptr<common::Connection>& from);
  // The task's held outcome also goes to the program on the connection its call came on.
  void push_result_back(wire::TaskResult& result);
  // True when the task was waiting for its call (it is then answered cancelled).
  bool cancel_awaiting(std::uint64_t task_id);
  std::vector<std::uint64_t> hand_back_awaiting();
  void forget_pushed_calls();  // the master that placed them is gone
  void arm_push_sweep();
  void sweep_pushed_calls();
  // The HTTP side (server_http.cc): /metrics and /healthz for those http_auth lets in.
  int http_get(const common::HttpRequest& request, std::string& body, std::string& content_type);

  asio::io_context& io_;
  common::ServerConfig config_;
  const base::Clock& clock_;
  common::MasterAddress master_;
  std::optional<std::string> token_;
  std::string server_id_;
  unsigned capacity_ = 1;
  asio::steady_timer wake_timer_;
  std::shared_ptr<common::Connection> connection_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<deps::ServerSync> deps_;
  std::unique_ptr<deps::JobDependencies> job_packages_;  // jobs' own packages and libraries
  std::unique_ptr<deps::OfferReader> offers_;  // what this machine's loader offers programs
  bool offer_on_registration_ = true;
  bool offer_wanted_ = false;  // the master asked before this connection's registration ended
  void send_offer();
  std::vector<std::string> services_environment_;
  std::string library_directory_;
  wire::Envelope pending_results_;
  bool flush_posted_ = false;
  // Holding results back for a batch (send_results_when_due).
  static constexpr auto kMaxResultDelay = std::chrono::milliseconds(1);
  static constexpr std::size_t kMaxHeldResults = 512;
  ResultRelease result_release_;
  asio::steady_timer result_timer_;
  bool result_timer_armed_ = false;
  bool registered_ = false;
  bool stopping_ = false;
  bool draining_ = false;
  std::optional<std::chrono::steady_clock::time_point> drain_deadline_;
  asio::steady_timer drain_timer_;
  std::int64_t highest_fencing_token_ = 0;          // for this process's life
  std::unique_ptr<common::MasterLocator> locator_;  // a zk:// master_url: follow the leader
  std::unique_ptr<common::HttpServer> http_;
  // Message bytes exchanged with masters (protobuf envelopes and their attachments; frame
  // headers not counted), for /metrics.
  std::uint64_t bytes_from_master_ = 0;
  std::uint64_t bytes_to_master_ = 0;
  std::uint64_t master_connections_ = 0;  // registrations completed, for /metrics
  base::Clock::time_point started_at_ = clock_.now();
  // Held results: what this server keeps, where others fetch it, and the threshold the master
  // gave each task still running here (master task id -> bytes).
  std::unique_ptr<ResultHolder> held_;
  std::unique_ptr<DataPort> data_port_;
  std::string data_address_;  // "host:port" announced at registration; "": none
  std::unordered_map<std::uint64_t, std::uint64_t> hold_thresholds_;
  std::uint64_t input_bytes_pulled_ = 0;  // held inputs fetched from other servers
  std::uint64_t inputs_pulled_ = 0;
  std::uint64_t input_pulls_failed_ = 0;
  std::uint64_t inputs_read_locally_ = 0;  // held inputs this server held itself
  // Pushed calls.
  struct AwaitingCall {
    wire::Assignment task;
    base::Clock::time_point since;
  };
  struct EarlyCall {
    std::string call;
    std::weak_ptr<common::Connection> from;
    base::Clock::time_point since;
  };
  struct Pusher {
    std::weak_ptr<common::Connection> connection;
    std::uint64_t ticket = 0;
  };
  std::unordered_map<std::uint64_t, AwaitingCall> awaiting_calls_;   // by ticket
  std::unordered_map<std::uint64_t, std::uint64_t> ticket_of_task_;  // master task id -> ticket
  std::unordered_map<std::uint64_t, EarlyCall> early_calls_;         // by ticket
  std::size_t early_call_bytes_ = 0;
  std::unordered_map<std::uint64_t, Pusher> pushers_;  // by master task id, while it runs
  asio::steady_timer push_sweep_timer_;
  bool push_sweep_armed_ = false;
  std::uint64_t calls_pushed_ = 0;             // pushed calls that came on the data port
  std::uint64_t calls_pushed_via_master_ = 0;  // ... and through the master
  std::uint64_t call_bytes_pushed_ = 0;        // bytes of both
  std::uint64_t calls_missing_ = 0;            // tasks whose call did not come in time
  std::uint64_t pushed_calls_unmatched_ = 0;   // calls whose ticket no task here had in time
  std::uint64_t results_pushed_ = 0;           // held outcomes sent back on data connections
  std::uint64_t result_bytes_pushed_ = 0;
};

// A result saying the server could not run the task (held_inputs.cc).
wire::TaskResult failed_result(std::uint64_t task_id, FailureKind kind, std::string message);

// `clupy --serve`: runs until SIGINT or SIGTERM. Returns the process exit code.
int run_server(const common::ServerConfig& config);

}  // namespace clupy::server
