// A server's HTTP side (http_port): /healthz for anyone, /metrics in the Prometheus text format
// for those http_auth lets in. Served by common::HttpServer on the server's io_context thread.
#include "base/hex.hpp"
#include "common/auth.hpp"
#include "common/metrics_text.hpp"
#include "common/version.hpp"
#include "server/server.hpp"

namespace clupy::server {

int ServerDaemon::http_get(const common::HttpRequest& request, std::string& body,
                           std::string& content_type) {
  const std::string& target = request.target;
  if (target == "/healthz") {
    body = "ok\n";
    return 200;
  }
  if (target != "/metrics") {
    body = "not found; try /metrics or /healthz\n";
    return 404;
  }
  if (!common::http_auth_allows(config_.http_auth, token_, request)) {
    body = common::http_token_required_text(config_.http_auth);
    return 401;
  }
  body = metrics_text();
  content_type = "text/plain; version=0.0.4; charset=utf-8";
  return 200;
}

std::string ServerDaemon::metrics_text() const {
  const WorkerPool::Counters& c = pool_->counters();
  common::MetricsText m;
  m.family("clupy_server_info", "gauge", "This server: its id and libclupy version (always 1).");
  m.sample("clupy_server_info", {{"server_id", server_id_}, {"version", common::library_version()}},
           1);
  m.single("clupy_server_uptime_seconds", "gauge", "Seconds since this server started.",
           std::chrono::duration<double>(clock_.now() - started_at_).count());
  m.single("clupy_server_registered", "gauge", "1 while registered with a master.",
           registered_ ? 1 : 0);
  m.single("clupy_server_registrations_total", "counter",
           "Registrations with a master (the first, then one after each reconnection).",
           static_cast<double>(master_connections_));
  m.single("clupy_server_draining", "gauge", "1 while draining (no new tasks).", draining_ ? 1 : 0);
  m.single("clupy_server_slots", "gauge", "Worker slots (capacity).", capacity_);
  m.single("clupy_server_busy_slots", "gauge", "Worker slots running a task now.", pool_->busy());
  m.single("clupy_server_workers", "gauge", "Worker processes alive.",
           static_cast<double>(pool_->worker_count()));
  m.single("clupy_server_tasks_unfinished", "gauge",
           "Tasks assigned here and not reported yet (waiting, queued in a worker or running).",
           static_cast<double>(pool_->unfinished()));
  m.single("clupy_server_workers_started_total", "counter", "Worker processes started.",
           static_cast<double>(c.workers_started));
  m.single("clupy_server_workers_restarted_total", "counter",
           "Workers started in place of one that crashed or was killed.",
           static_cast<double>(c.workers_restarted));
  m.single("clupy_server_workers_crashed_total", "counter",
           "Workers that died unasked (a signal, an exit, a failed start).",
           static_cast<double>(c.workers_crashed));
  m.single("clupy_server_workers_killed_total", "counter",
           "Workers the server killed to end a task (timeout, cancellation).",
           static_cast<double>(c.workers_killed));
  m.single("clupy_server_image_cache_hits_total", "counter",
           "Program images found verified in the cache directory at their first use.",
           static_cast<double>(c.image_cache_hits));
  m.single("clupy_server_image_cache_misses_total", "counter",
           "Program images fetched from the master at their first use.",
           static_cast<double>(c.image_cache_misses));
  m.single("clupy_server_image_bytes_fetched_total", "counter",
           "Bytes of program images fetched from the master.",
           static_cast<double>(c.image_bytes_fetched));
  m.single("clupy_server_received_bytes_total", "counter",
           "Message bytes received from masters (envelopes with their attachments).",
           static_cast<double>(bytes_from_master_));
  m.single("clupy_server_sent_bytes_total", "counter",
           "Message bytes sent to masters (envelopes with their attachments).",
           static_cast<double>(bytes_to_master_));
  m.family("clupy_server_tasks_run_total", "counter",
           "Tasks a worker ran to the end (a value or an exception), by program image.");
  for (const auto& [sha, image] : c.images)
    m.sample("clupy_server_tasks_run_total",
             {{"image", base::to_hex(sha).substr(0, 16)}, {"program", image.program}},
             static_cast<double>(image.tasks_run));
  m.family("clupy_server_tasks_crashed_total", "counter",
           "Tasks that ended with their worker (crash, timeout, cancellation), by program image.");
  for (const auto& [sha, image] : c.images)
    m.sample("clupy_server_tasks_crashed_total",
             {{"image", base::to_hex(sha).substr(0, 16)}, {"program", image.program}},
             static_cast<double>(image.tasks_crashed));
  const ResultHolder::Counters& h = held_->counters();
  m.single("clupy_server_held_results", "gauge",
           "Results held here for their programs (outcomes of at least the threshold).",
           static_cast<double>(h.held));
  m.single("clupy_server_held_result_bytes", "gauge", "Bytes of the results held here.",
           static_cast<double>(h.bytes_held));
  m.single("clupy_server_held_result_bytes_spilled", "gauge",
           "Bytes of held results in files under cache_dir (past result_memory).",
           static_cast<double>(h.bytes_spilled));
  m.single("clupy_server_results_held_total", "counter", "Results kept here since start.",
           static_cast<double>(h.results_kept_total));
  m.single("clupy_server_results_freed_total", "counter",
           "Held results freed (no Future and no queued task needed them, or the master left).",
           static_cast<double>(h.results_freed_total));
  m.single("clupy_server_result_bytes_spilled_total", "counter",
           "Bytes of held results written to disk since start.",
           static_cast<double>(h.bytes_spilled_total));
  m.single("clupy_server_result_bytes_served_total", "counter",
           "Bytes of held results sent on the data port (to programs and servers).",
           static_cast<double>(data_port_ ? data_port_->bytes_served() : 0));
  m.single("clupy_server_data_connections_refused_total", "counter",
           "Connections to the data port closed on accept: max_pending_connections were in "
           "their handshake.",
           static_cast<double>(data_port_ ? data_port_->connections_refused() : 0));
  m.single("clupy_server_input_bytes_pulled_total", "counter",
           "Bytes of held inputs fetched from other servers' data ports.",
           static_cast<double>(input_bytes_pulled_));
  m.single("clupy_server_inputs_pulled_total", "counter",
           "Held inputs of tasks run here fetched from other servers.",
           static_cast<double>(inputs_pulled_));
  m.single("clupy_server_inputs_read_locally_total", "counter",
           "Held inputs of tasks run here that this server held itself.",
           static_cast<double>(inputs_read_locally_));
  m.single("clupy_server_input_pulls_failed_total", "counter",
           "Held inputs that could not be fetched (their task failed kLost).",
           static_cast<double>(input_pulls_failed_));
  m.single("clupy_server_calls_pushed_total", "counter",
           "Calls of tasks run here that programs pushed on the data port.",
           static_cast<double>(calls_pushed_));
  m.single("clupy_server_calls_pushed_via_master_total", "counter",
           "Pushed calls that came through the master (the program's data connection failed).",
           static_cast<double>(calls_pushed_via_master_));
  m.single("clupy_server_call_bytes_pushed_total", "counter", "Bytes of pushed calls received.",
           static_cast<double>(call_bytes_pushed_));
  m.single("clupy_server_calls_missing_total", "counter",
           "Tasks placed here whose pushed call did not come within push_timeout.",
           static_cast<double>(calls_missing_));
  m.single("clupy_server_pushed_calls_unmatched_total", "counter",
           "Pushed calls no task placed here claimed (cancelled, timed out or placed elsewhere).",
           static_cast<double>(pushed_calls_unmatched_));
  m.single("clupy_server_calls_awaited", "gauge",
           "Tasks placed here waiting for their pushed call.",
           static_cast<double>(awaiting_calls_.size()));
  m.single("clupy_server_results_pushed_total", "counter",
           "Held outcomes sent back to programs on the connection their call came on.",
           static_cast<double>(results_pushed_));
  m.single("clupy_server_result_bytes_pushed_total", "counter", "Bytes of those outcomes.",
           static_cast<double>(result_bytes_pushed_));
  return m.take();
}

}  // namespace clupy::server
