// Configuration of the three kinds of process, read from clupy.{master,server,client}.yaml.
// docs/configuration.md lists every key with its default. Loading rejects unknown keys and bad
// values with a ConfigError naming the file, the line and the key; flags are applied after.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>

#include "common/coord_config.hpp"
#include "common/frame.hpp"
#include "common/store_config.hpp"

namespace clupy::common {

using Millis = std::chrono::milliseconds;

struct TlsConfig {
  bool enabled = false;
  std::string cert_file;  // this side's certificate chain (PEM); required on the master
  std::string key_file;   // its private key (PEM); required on the master
  std::string ca_file;    // CA bundle that verifies the peer; required on servers and clients
  bool operator==(const TlsConfig&) const = default;
};

// Who may read the master's /status and /metrics (/healthz is open to all).
enum class HttpAuth {
  kLoopback,  // requests from a loopback address, or carrying the cluster token
  kToken,     // only requests carrying the cluster token ("Authorization: Bearer <token>")
  kOff,       // anyone who can reach http_port
};

struct MasterConfig {
  std::string bind = "127.0.0.1";
  int port = 7878;             // 0 picks a free port (tests; see port_file)
  std::string port_file;       // when set, the bound port is written there once listening
  std::string token_file;      // empty: default_token_path()
  bool allow_no_auth = false;  // accept connections without a token (loopback only)
  std::string data_dir = "clupy-master-data";
  // The dependency manifest (docs/dependencies.md); empty: clupy.master.dependency.yaml in the
  // working directory when it exists, else none; "none": none even if that file exists.
  std::string dependency_file;
  int http_port = 0;  // 0: no HTTP side
  Millis registration_ttl{10'000};
  Millis reservation_ttl{60'000};
  Millis maintenance_period{1'000};
  int default_server_request_count = 0;  // servers a client gets when it asks for 0; 0 = all
  std::size_t image_store_size = std::size_t{4} << 30;  // bytes of program images kept on disk
  int client_window = 65536;  // tasks a client may have submitted and unresolved
  int default_retries = 3;    // reruns of a task lost with its server
  int assign_ahead = 8;       // tasks assigned per worker slot (>1 queues tasks on servers)
  Millis handshake_timeout{10'000};
  int max_pending_connections = 64;  // connections in their handshake at once; more are refused
  Millis idle_timeout{300'000};  // authenticated connections silent this long are closed; 0: never
  HttpAuth http_auth = HttpAuth::kLoopback;  // who may read /status, /metrics and the dashboard
  // The last lines of each task's output the master keeps (dashboard, `clupy logs`).
  int task_output_lines = 50;                             // per task; 0: none are kept
  int task_output_tasks_per_job = 1000;                   // a job's oldest task's lines go first
  std::size_t task_output_bytes = std::size_t{16} << 20;  // in total; the oldest task's go first
  std::size_t max_frame_size = kDefaultMaxFrameSize;
  // Successful outcomes of at least this many bytes stay on the server that made them (held
  // results, protocol 1.4); 0: every outcome comes through the master.
  std::size_t result_threshold = std::size_t{64} << 10;
  // Calls of at least this many bytes go from the client straight to the server that runs
  // them (pushed calls, protocol 1.5); 0: every call comes through the master.
  std::size_t push_threshold = std::size_t{64} << 10;
  // Bytes of producers' calls kept to make lost held results again (lineage); past it, new held
  // results keep none (their loss fails what needs them with kLost).
  std::size_t lineage_memory = std::size_t{256} << 20;
  std::string log_level = "info";
  TlsConfig tls;
  StoreSection store;                // the Redis file store (docs/store.md); off unless configured
  CoordinationSection coordination;  // ZooKeeper: standby masters (docs/coordination.md)
};

struct ServerConfig {
  std::string master_url = "clupy://localhost:7878";  // or zk://hosts/chroot (standby masters)
  int port = 0;                                  // advertised port for direct connections; 0 = none
  std::string server_id;                         // empty: a random id per process
  int capacity = 0;                              // worker slots; 0 = this machine's cores
  std::string cache_dir = "clupy-server-cache";  // program images and libraries from the master
  std::map<std::string, std::string> labels;
  Millis registration_interval{1'000};   // heartbeat period
  Millis failure_retry_interval{1'000};  // wait between reconnection attempts
  std::string token_file;
  std::size_t max_frame_size = kDefaultMaxFrameSize;
  std::string log_level = "info";
  TlsConfig tls;
  CoordinationSection coordination;  // session settings for a zk:// master_url
  int http_port = 0;                 // /metrics and /healthz; 0: no HTTP side
  std::string http_bind = "127.0.0.1";
  HttpAuth http_auth = HttpAuth::kLoopback;  // who may read /metrics
  // How often a synced server checks its dependencies again and prunes its library cache
  // (docs/dependencies.md); 0 ("off"): never.
  Millis dependency_recheck_period{600'000};
  // Held results (docs/configuration.md#held-results): the data port other programs and
  // servers fetch them from (0: any free port, announced at registration; -1: none), its
  // address, the memory they may take before they are spilled to cache_dir, and this server's
  // own threshold (unset: the master's).
  int data_port = 0;
  std::string data_bind = "127.0.0.1";
  // The data port's address as others are told it ("host:port"); "": data_bind (or, when that
  // is a wildcard, this host's name) and the bound port. For NAT and port forwarding.
  std::string data_address;
  std::size_t result_memory = std::size_t{1} << 30;
  std::optional<std::size_t> result_threshold;
  // Pushed calls (docs/protocol.md#pushed-calls): how long a task placed here waits for its
  // call from the program before the master is told to place it again.
  Millis push_timeout{30'000};
  // The data port's defences against peers that connect and do not finish the handshake, as
  // the master's port has them.
  Millis handshake_timeout{10'000};
  int max_pending_connections = 64;  // connections in their handshake at once; more are refused
};

// What a client does when its program's libraries differ from a server's (docs/dependencies.md).
enum class DependencyCheck {
  kWarn,   // servers that cannot start the program get none of its tasks; other differences
           // (an older package) are logged
  kError,  // every difference keeps the server out
  kOff,    // nothing is compared
};

struct ClientConfig {
  std::string master_url;  // empty: clupy://localhost:7878; or zk://hosts/chroot
  std::string token_file;
  Millis connect_timeout{5'000};
  std::size_t max_frame_size = kDefaultMaxFrameSize;
  std::string log_level = "warn";
  TlsConfig tls;
  CoordinationSection coordination;  // session settings for a zk:// master_url
  DependencyCheck dependency_check = DependencyCheck::kWarn;
  // The job's own packages (docs/dependencies.md#a-jobs-own-packages); empty:
  // clupy.client.dependency.yaml in the working directory when it exists.
  std::string dependency_file;
};

// Each loader reads `path` when non-empty (a missing file is an error), else the default file
// in the working directory when it exists (clupy.master.yaml and so on), else returns defaults.
MasterConfig load_master_config(const std::string& path = "");
ServerConfig load_server_config(const std::string& path = "");
ClientConfig load_client_config(const std::string& path = "");

// The same, from YAML text; `source_name` is used in error messages. Exposed for tests.
MasterConfig parse_master_config(const std::string& yaml, const std::string& source_name);
ServerConfig parse_server_config(const std::string& yaml, const std::string& source_name);
ClientConfig parse_client_config(const std::string& yaml, const std::string& source_name);

// Semantic checks that span keys (TLS files present when enabled, no-auth only on loopback...).
// Throws ConfigError. Run after flags are applied.
void validate(const MasterConfig& config);
void validate(const ServerConfig& config);

// "250ms", "2s", "1.5s", "3m", "1h" or a plain number of seconds.
Millis parse_duration(const std::string& text);
// "1048576", "64KiB", "16MiB", "1GiB" (also KB/MB/GB as powers of 1000).
std::size_t parse_size(const std::string& text);

}  // namespace clupy::common
