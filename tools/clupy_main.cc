// The clupy command: `--master`, `--serve`, `--client info` (and `info`/`status`), as the
// original CluPy spells them. Parsing only; the daemons live in src/.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "client/logs_cli.hpp"
#include "client/service_cli.hpp"
#include "client/top.hpp"
#include "clupy/cluster.hpp"
#include "clupy/errors.hpp"
#include "common/config.hpp"
#include "common/log.hpp"
#include "common/version.hpp"
#include "master/master.hpp"
#include "server/server.hpp"
#include "slurm/slurm.hpp"
#include "store/cli.hpp"

namespace {

using clupy::common::parse_duration;

std::string format_time(std::chrono::system_clock::time_point t) {
  if (t.time_since_epoch().count() == 0) return "-";
  std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::localtime_r(&seconds, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
  return text;
}

std::int64_t epoch_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

nlohmann::json dependencies_json(const std::vector<clupy::DependencyStatus>& items) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& d : items)
    out.push_back({{"kind", d.kind},
                   {"name", d.name},
                   {"required", d.required},
                   {"state", d.state},
                   {"version", d.version},
                   {"detail", d.detail},
                   {"exit_code", d.exit_code}});
  return out;
}

// Under a server's row: its dependency state, and each item not simply present.
void print_dependencies(const clupy::ServerStatus& s) {
  if (s.dependency_state.empty()) return;
  std::printf("  dependencies: %s (manifest %s)%s%s\n", s.dependency_state.c_str(),
              s.dependency_manifest.substr(0, 12).c_str(), s.dependency_summary.empty() ? "" : ": ",
              s.dependency_summary.c_str());
  for (const auto& d : s.dependencies) {
    if (d.state == "present" && s.dependency_state == "satisfied") continue;
    std::string line = d.detail.substr(0, d.detail.find("; output ends:"));
    std::printf("    %-7s %-28s %-10s %-16s %s\n", d.kind.c_str(),
                (d.name + (d.required.empty() ? "" : " " + d.required)).c_str(), d.state.c_str(),
                d.version.empty() ? "-" : d.version.c_str(), line.c_str());
  }
}

void print_json(const clupy::ClusterStatus& status) {
  nlohmann::json servers = nlohmann::json::array();
  for (const auto& s : status.servers)
    servers.push_back(
        {{"server_id", s.server_id},
         {"hostname", s.hostname},
         {"address", s.address},
         {"pid", s.pid},
         {"capacity", s.capacity},
         {"busy_slots", s.busy_slots},
         {"labels", s.labels},
         {"version", s.version},
         {"abi_tag", s.abi_tag},
         {"registered_at_ms", epoch_ms(s.registered_at)},
         {"last_heartbeat_ms", epoch_ms(s.last_heartbeat)},
         {"reserved_by", s.reserved_by},
         {"reserved_since_ms", s.reserved_by.empty() ? 0 : epoch_ms(s.reserved_since)},
         {"connected", s.connected},
         {"dependency_state", s.dependency_state},
         {"dependency_manifest", s.dependency_manifest},
         {"dependency_summary", s.dependency_summary},
         {"dependencies", dependencies_json(s.dependencies)}});
  nlohmann::json out = {{"master_url", status.master_url},
                        {"master_version", status.master_version},
                        {"master_time_ms", epoch_ms(status.master_time)},
                        {"master_started_ms", epoch_ms(status.master_started)},
                        {"queued_tasks", status.queued_tasks},
                        {"running_tasks", status.running_tasks},
                        {"clients", status.clients},
                        {"dependency_manifest", status.dependency_manifest},
                        {"dependency_manifest_error", status.dependency_manifest_error},
                        {"servers", servers}};
  std::cout << out.dump(2) << "\n";
}

void print_table(const clupy::ClusterStatus& status) {
  std::printf("master %s (libclupy %s, up since %s)\n", status.master_url.c_str(),
              status.master_version.c_str(), format_time(status.master_started).c_str());
  std::printf("%zu server(s), %u client(s), %llu task(s) queued, %llu running\n",
              status.servers.size(), status.clients,
              static_cast<unsigned long long>(status.queued_tasks),
              static_cast<unsigned long long>(status.running_tasks));
  if (!status.dependency_manifest.empty())
    std::printf("dependency manifest %s\n", status.dependency_manifest.substr(0, 12).c_str());
  if (!status.dependency_manifest_error.empty())
    std::printf("dependency manifest NOT reloaded: %s\n", status.dependency_manifest_error.c_str());
  if (status.servers.empty()) return;
  std::printf("%-18s %-22s %5s %-19s %-19s %-16s %-19s %s\n", "SERVER", "ADDRESS", "SLOTS",
              "REGISTERED", "UPDATED", "RESERVED BY", "RESERVED SINCE", "STATE");
  for (const auto& s : status.servers) {
    std::string labels;
    for (const auto& [k, v] : s.labels) labels += (labels.empty() ? " " : ",") + k + "=" + v;
    std::printf("%-18s %-22s %5u %-19s %-19s %-16s %-19s %s%s\n", s.server_id.c_str(),
                (s.address + "/" + std::to_string(s.pid)).c_str(), s.capacity,
                format_time(s.registered_at).c_str(), format_time(s.last_heartbeat).c_str(),
                s.reserved_by.empty() ? "-" : s.reserved_by.c_str(),
                s.reserved_by.empty() ? "-" : format_time(s.reserved_since).c_str(),
                s.connected ? "up" : "unreachable", labels.c_str());
    print_dependencies(s);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // `clupy store put|get|ls|stat|rm|pin|unpin ...`: the file store, found through the master.
  if (argc > 1 && std::string(argv[1]) == "store")
    return clupy::store::run_cli_with_master(std::vector<std::string>(argv + 2, argv + argc));
  // `clupy logs [JOB.]TASK [...]`: a task's output as the master kept it.
  if (argc > 1 && std::string(argv[1]) == "logs")
    return clupy::client::logs_command(std::vector<std::string>(argv + 2, argv + argc));
  // `clupy top [...]`: the cluster in the terminal, refreshed.
  if (argc > 1 && std::string(argv[1]) == "top")
    return clupy::client::top_command(std::vector<std::string>(argv + 2, argv + argc));
  // `clupy --slurm-submit N [...]`: its words go to sbatch unless they are clupy's.
  if (argc > 1 && std::string(argv[1]) == "--slurm-submit") {
    try {
      return clupy::slurm::submit_command(std::vector<std::string>(argv + 2, argv + argc));
    } catch (const clupy::Error& e) {
      std::cerr << "clupy: " << e.what() << "\n";
      return 1;
    }
  }
  // `clupy [options] --slurm-run PROGRAM ARGS...`: everything after PROGRAM is its own.
  std::vector<std::string> program;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) != "--slurm-run") continue;
    program.assign(argv + i + 1, argv + argc);
    if (program.empty()) {
      std::cerr << "clupy: --slurm-run needs a PROGRAM\n";
      return 2;
    }
    argc = i;
    break;
  }

  CLI::App app{"CluPy for C++: run functions on a cluster (docs/operations.md)", "clupy"};
  app.set_version_flag("--version", std::string("clupy ") + clupy::common::library_version());

  bool master_mode = false, serve_mode = false, slurm_mode = false;
  std::string client_command;
  std::string command;
  app.add_flag("--master", master_mode, "run the master daemon (reads ./clupy.master.yaml)");
  app.add_flag("--serve", serve_mode, "run a server daemon (reads ./clupy.server.yaml)");
  app.add_option("--client", client_command, "client command: info");
  app.add_option("command", command,
                 "info | status (same as --client info) | services; `clupy store --help` for the "
                 "file store");
  std::string publish_file, unpublish_name;
  app.add_option("--publish", publish_file,
                 "publish the service this YAML file describes (docs/services.md)");
  app.add_option("--unpublish", unpublish_name, "stop the published service of this name");

  std::string config_file, master_url, bind, port_file, token_file, data_dir, log_level;
  std::string dependency_file;
  std::string registration_ttl, registration_interval, failure_retry_interval, server_id;
  std::optional<int> port, http_port, capacity;
  std::vector<std::string> labels;
  bool allow_no_auth = false, json = false;
  app.add_option("--config", config_file,
                 "YAML file instead of the default in the working directory");
  app.add_option("--master-url", master_url, "clupy://host:port of the master");
  app.add_option("--bind", bind, "master: address to listen on");
  app.add_option("--port", port, "master: port to listen on (0 = any free port)");
  app.add_option("--port-file", port_file, "master: write the bound port to this file");
  app.add_option("--http-port", http_port,
                 "master: HTTP status port; server: HTTP /metrics port (0 = off)");
  app.add_option("--data-dir", data_dir, "master: data directory");
  app.add_option("--dependency-file", dependency_file,
                 "master: dependency manifest (default ./clupy.master.dependency.yaml)");
  app.add_option("--token-file", token_file, "cluster token file");
  app.add_flag("--allow-no-auth", allow_no_auth,
               "master: accept peers without a token (loopback only)");
  app.add_option("--registration-ttl", registration_ttl,
                 "master: drop servers silent this long (e.g. 10s)");
  app.add_option("--registration-interval", registration_interval, "server: heartbeat period");
  app.add_option("--failure-retry-interval", failure_retry_interval, "server: reconnect period");
  app.add_option("--capacity", capacity, "server: worker slots (default: cores)");
  app.add_option("--label", labels, "server: label key=value (repeatable)");
  app.add_option("--server-id", server_id, "server: fixed server id");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off");
  app.add_flag("--json", json, "info: print JSON for scripts");

  clupy::slurm::Options slurm;
  std::string drain_before, slurm_wait, slurm_poll;
  app.add_flag("--slurm", slurm_mode,
               "run in a Slurm step: a server per task, the master with SLURM_PROCID 0 "
               "(docs/slurm.md); --slurm-run PROGRAM ARGS... also runs PROGRAM on it");
  app.add_option("--slurm-dir", slurm.dir, "slurm: parent of job folders (default .clupy)");
  app.add_option("--slurm-join", slurm.join, "slurm: serve the cluster of this job folder");
  app.add_option("--slurm-interface", slurm.interface, "slurm: the master's network interface");
  app.add_option("--slurm-address", slurm.address, "slurm: the master's address");
  app.add_option("--slurm-drain-before", drain_before,
                 "slurm: drain this long before the job's time limit (default 2m)");
  app.add_option("--slurm-wait", slurm_wait, "slurm: wait this long for the master (default 60s)");
  app.add_option("--slurm-poll", slurm_poll,
                 "slurm: read the job's time limit this often (default 15s)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (slurm_mode || !program.empty()) {
      if (master_mode || serve_mode || !client_command.empty() || !command.empty())
        throw clupy::ConfigError("--slurm runs both daemons: no --master, --serve or command");
      slurm.program = program;
      slurm.master_url = master_url;
      slurm.token_file = token_file;
      slurm.capacity = capacity;
      slurm.server_config = config_file;
      slurm.log_level = log_level;
      if (!drain_before.empty()) slurm.drain_before = parse_duration(drain_before);
      if (!slurm_wait.empty()) slurm.wait = parse_duration(slurm_wait);
      if (!slurm_poll.empty()) slurm.end_time_poll = parse_duration(slurm_poll);
      return clupy::slurm::run(slurm);
    }
    if (!publish_file.empty() || !unpublish_name.empty() || command == "services") {
      clupy::ConnectOptions options;
      options.master_url = master_url;
      options.token_file = token_file;
      options.config_file = config_file;
      if (!publish_file.empty()) return clupy::client::publish_command(publish_file, options);
      if (!unpublish_name.empty()) return clupy::client::unpublish_command(unpublish_name, options);
      return clupy::client::services_command(options, json);
    }
    if (master_mode + serve_mode + (!client_command.empty() || !command.empty()) != 1) {
      std::cerr << "clupy: choose one of --master, --serve, --client info (or `clupy info`)\n"
                << app.help();
      return 2;
    }
    if (master_mode) {
      auto config = clupy::common::load_master_config(config_file);
      if (!bind.empty()) config.bind = bind;
      if (port) config.port = *port;
      if (!port_file.empty()) config.port_file = port_file;
      if (http_port) config.http_port = *http_port;
      if (!data_dir.empty()) config.data_dir = data_dir;
      if (!dependency_file.empty()) config.dependency_file = dependency_file;
      if (!token_file.empty()) config.token_file = token_file;
      if (allow_no_auth) config.allow_no_auth = true;
      if (!registration_ttl.empty()) config.registration_ttl = parse_duration(registration_ttl);
      if (!log_level.empty()) config.log_level = log_level;
      clupy::common::set_log_level(clupy::common::parse_log_level(config.log_level));
      return clupy::master::run_master(config);
    }
    if (serve_mode) {
      auto config = clupy::common::load_server_config(config_file);
      if (!master_url.empty()) config.master_url = master_url;
      if (port) config.port = *port;
      if (capacity) config.capacity = *capacity;
      if (http_port) config.http_port = *http_port;
      if (!token_file.empty()) config.token_file = token_file;
      if (!server_id.empty()) config.server_id = server_id;
      if (!registration_interval.empty())
        config.registration_interval = parse_duration(registration_interval);
      if (!failure_retry_interval.empty())
        config.failure_retry_interval = parse_duration(failure_retry_interval);
      for (const auto& label : labels) {
        auto eq = label.find('=');
        if (eq == std::string::npos || eq == 0)
          throw clupy::ConfigError("--label '" + label + "': expected key=value");
        config.labels[label.substr(0, eq)] = label.substr(eq + 1);
      }
      if (!log_level.empty()) config.log_level = log_level;
      clupy::common::set_log_level(clupy::common::parse_log_level(config.log_level));
      return clupy::server::run_server(config);
    }
    const std::string& what = client_command.empty() ? command : client_command;
    if (what != "info" && what != "status") {
      std::cerr << "clupy: unknown command '" << what << "' (known: info, status)\n";
      return 2;
    }
    clupy::ConnectOptions options;
    options.master_url = master_url;
    options.token_file = token_file;
    options.config_file = config_file;
    auto status = clupy::cluster_status(options);
    if (json)
      print_json(status);
    else
      print_table(status);
    return 0;
  } catch (const clupy::Error& e) {
    std::cerr << "clupy: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "clupy: unexpected error: " << e.what() << "\n";
    return 1;
  }
}
