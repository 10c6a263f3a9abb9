// The master's HTTP pages: who may read them (http_auth), /status as JSON and /metrics in the
// Prometheus text format. Served by common::HttpServer on the master's io_context thread.
#include <nlohmann/json.hpp>

#include "common/auth.hpp"
#include "common/metrics_text.hpp"
#include "common/version.hpp"
#include "deps/package_sync.hpp"
#include "master/master.hpp"

namespace clupy::master {

int Master::http_get(const common::HttpRequest& request, std::string& body,
                     std::string& content_type) {
  const std::string& target = request.target;
  if (target == "/healthz") {
    body = "ok\n";
    return 200;
  }
  if (target != "/status" && target != "/metrics") {
    body = "not found; try / (the dashboard), /status, /metrics or /healthz\n";
    return 404;
  }
  // /status names servers, hosts, pids and clients: token holders only (docs/operations.md).
  if (!http_allowed(request)) {
    body = common::http_token_required_text(config_.http_auth);
    return 401;
  }
  if (target == "/status") {
    body = status_json();
    content_type = "application/json";
  } else {
    body = metrics_text();
    content_type = "text/plain; version=0.0.4";
  }
  return 200;
}

namespace {
// A server's dependency report: null without a manifest.
nlohmann::json dependencies_json(const wire::DependencyReport& report) {
  if (report.manifest_version().empty()) return nullptr;
  nlohmann::json items = nlohmann::json::array();
  for (const auto& item : report.items())
    items.push_back({{"kind", item.kind() == wire::DependencyItem::LIBRARY ? "library" : "package"},
                     {"name", item.name()},
                     {"required", item.required()},
                     {"state", deps::state_name(item.state())},
                     {"version", item.version()},
                     {"detail", item.detail()},
                     {"exit_code", item.exit_code()}});
  return {{"manifest_version", report.manifest_version()},
          {"state", report.in_progress() ? "syncing"
                    : report.satisfied() ? "satisfied"
                                         : "not satisfied"},
          {"summary", report.summary()},
          {"items", items}};
}
}  // namespace

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
                       {"connected", e.connected()},
                       {"dependencies", dependencies_json(e.dependencies())}});
  }
  nlohmann::json out = {{"master_version", common::library_version()},
                        {"master_started_ms", to_epoch_ms(started_at_, now)},
                        {"queued_tasks", scheduler_.queued()},
                        {"running_tasks", scheduler_.running()},
                        {"clients", scheduler_.clients()},
                        {"dependency_manifest", manifest_->version()},
                        {"dependency_manifest_error", manifest_->last_error()},
                        {"servers", servers}};
  return out.dump(2) + "\n";
}

std::string Master::metrics_text() {
  const auto& c = scheduler_.counters();
  std::size_t slots = 0, connected = 0, unsynced = 0;
  wire::RegistryReply reply;
  registry_.fill(reply, Clock::now());
  for (const auto& e : reply.servers()) {
    slots += e.server().capacity();
    connected += e.connected();
    unsynced += e.connected() && !manifest_->satisfied_by(e.dependencies());
  }
  common::MetricsText text;
  text.single("clupy_servers", "gauge", "Servers in the registry.",
              static_cast<double>(registry_.size()));
  text.single("clupy_servers_connected", "gauge", "Servers with a live connection.",
              static_cast<double>(connected));
  text.single("clupy_worker_slots", "gauge", "Worker slots of all registered servers.",
              static_cast<double>(slots));
  text.single("clupy_servers_dependencies_unsatisfied", "gauge",
              "Connected servers not (yet) meeting the dependency manifest; they take no tasks.",
              static_cast<double>(unsynced));
  text.single("clupy_clients", "gauge", "Clients with an open job.",
              static_cast<double>(scheduler_.clients()));
  text.single("clupy_tasks_queued", "gauge", "Tasks waiting for a slot.",
              static_cast<double>(scheduler_.queued()));
  text.single("clupy_tasks_running", "gauge", "Tasks assigned to servers.",
              static_cast<double>(scheduler_.running()));
  text.single("clupy_tasks_submitted_total", "counter", "Tasks submitted by clients.",
              static_cast<double>(c.submitted));
  text.single("clupy_tasks_succeeded_total", "counter", "Tasks that produced an outcome.",
              static_cast<double>(c.succeeded));
  text.single("clupy_tasks_failed_total", "counter",
              "Tasks that crashed, timed out, were cancelled or lost.",
              static_cast<double>(c.failed));
  text.single("clupy_tasks_rerun_total", "counter", "Tasks rerun after their server was lost.",
              static_cast<double>(c.rerun));
  text.single("clupy_tasks_waiting", "gauge", "Tasks waiting for the futures passed to them.",
              static_cast<double>(scheduler_.waiting()));
  text.single("clupy_task_inputs_spliced_total", "counter",
              "Values of finished tasks put into the calls of tasks they were passed to.",
              static_cast<double>(c.inputs_spliced));
  text.single("clupy_task_values_withheld_total", "counter",
              "Results whose value was not sent: the program held no future of them.",
              static_cast<double>(c.values_withheld));
  text.single("clupy_result_bytes_delivered_total", "counter",
              "Bytes of task outcomes sent to client programs.",
              static_cast<double>(c.result_bytes_delivered));
  text.single("clupy_result_bytes_received_total", "counter",
              "Bytes of task outcomes received from servers (held results excluded).",
              static_cast<double>(c.result_bytes_received));
  text.single("clupy_results_held_total", "counter",
              "Results that stayed on the servers that made them (result_threshold).",
              static_cast<double>(c.results_held));
  text.single("clupy_held_result_bytes", "gauge",
              "Bytes of held results the master knows of now (on their servers).",
              static_cast<double>(scheduler_.held_bytes()));
  text.single("clupy_task_inputs_referenced_total", "counter",
              "Held results named in dependents' assignments instead of their values.",
              static_cast<double>(c.inputs_referenced));
  text.single("clupy_results_freed_total", "counter",
              "Held results servers were told to drop (no Future, no queued task needed them).",
              static_cast<double>(c.results_freed));
  text.single("clupy_results_lost_total", "counter", "Held results lost with their servers.",
              static_cast<double>(c.results_lost));
  text.single("clupy_results_recomputed_total", "counter",
              "Reruns of tasks whose held results were lost with their servers (lineage).",
              static_cast<double>(c.results_recomputed));
  text.single("clupy_lineage_calls", "gauge",
              "Calls the master keeps to make held results again if their servers are lost.",
              static_cast<double>(scheduler_.lineage_calls()));
  text.single("clupy_lineage_bytes", "gauge", "Bytes of the calls kept for lineage.",
              static_cast<double>(scheduler_.lineage_bytes()));
  text.single("clupy_result_bytes_relayed_total", "counter",
              "Bytes of held results fetched through the master (a client's fallback).",
              static_cast<double>(result_bytes_relayed_));
  text.single("clupy_call_bytes_received_total", "counter",
              "Bytes of calls that came to the master in submitted tasks.",
              static_cast<double>(c.call_bytes_received));
  text.single("clupy_call_bytes_pushed_total", "counter",
              "Bytes of calls programs pushed to servers themselves (pushed calls).",
              static_cast<double>(c.call_bytes_pushed));
  text.single("clupy_call_tickets_total", "counter",
              "Placements of tasks whose call the program pushes to the server itself.",
              static_cast<double>(c.call_tickets));
  text.single("clupy_calls_missing_total", "counter",
              "Pushed calls that never reached their server (their tasks were placed again).",
              static_cast<double>(c.calls_missing));
  text.single("clupy_pushed_call_bytes_relayed_total", "counter",
              "Bytes of pushed calls sent through the master (the program's fallback).",
              static_cast<double>(pushed_call_bytes_relayed_));
  text.single("clupy_image_store_bytes", "gauge", "Bytes of program images on disk.",
              static_cast<double>(images_.total_bytes()));
  if (store_) {
    const StoreCounters store = store_->counters();
    text.single("clupy_store_files", "gauge", "Files in the file store after the last sweep.",
                static_cast<double>(store.files));
    text.single("clupy_store_bytes", "gauge", "Bytes of those files.",
                static_cast<double>(store.live_bytes));
    text.single("clupy_store_reachable", "gauge", "1 if the last janitor operation reached Redis.",
                store.redis_reachable ? 1 : 0);
    text.single("clupy_store_sweeps_total", "counter", "Janitor sweeps completed.",
                static_cast<double>(store.sweeps));
    text.single("clupy_store_sweep_failures_total", "counter", "Janitor sweeps that failed.",
                static_cast<double>(store.sweep_failures));
    text.family("clupy_store_files_removed_total", "counter",
                "Files the janitor removed, by reason.");
    for (const auto& [reason, count] : store.files_removed)
      text.sample("clupy_store_files_removed_total", {{"reason", reason}},
                  static_cast<double>(count));
  }
  telemetry_->write_metrics(text);
  return text.take();
}

}  // namespace clupy::master
