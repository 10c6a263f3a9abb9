#include "client/service_cli.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/sha256.hpp"
#include "client/admin.hpp"
#include "clupy/errors.hpp"
#include "common/auth.hpp"
#include "common/dial.hpp"
#include "common/handshake.hpp"
#include "common/image_transfer.hpp"
#include "deps/manifest.hpp"
#include "service/openapi.hpp"
#include "service/spec.hpp"

extern char** environ;

namespace clupy::client {

namespace {

using common::asio::awaitable;

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

// Waits for the reply to `request_id`, skipping other messages.
awaitable<wire::Envelope> reply_to(common::Connection& connection, std::uint64_t request_id) {
  for (;;) {
    wire::Envelope message;
    try {
      message = co_await connection.read_frame();
    } catch (const common::ConnectionClosed& e) {
      throw ConnectionError(std::string("the master closed the connection: ") + e.what());
    }
    if (message.has_image_failed())
      throw Error("the master could not store the program: " + message.image_failed().reason());
    if (message.request_id() == request_id) co_return message;
  }
}

awaitable<wire::ServicePublished> publish_on(common::DialOptions dial,
                                             const services::ServiceSpec& spec,
                                             std::string exports_json, std::string key,
                                             std::string sha256) {
  dial.role = wire::ROLE_CLIENT;
  auto dialed = co_await common::dial_master(dial);
  auto& connection = *dialed.connection;
  wire::Envelope open;
  open.set_request_id(1);
  auto* job = open.mutable_open_job();
  job->set_image_sha256(sha256);
  job->set_image_size(std::filesystem::file_size(spec.binary));
  job->set_image_name(std::filesystem::path(spec.binary).filename().string());
  job->set_client_name(common::self_description());
  // The service file's packages are its job's own: JobOpened comes once every server has
  // installed them or failed to (docs/services.md).
  for (const auto& name : spec.packages) {
    deps::check_package_name(name);
    job->add_packages()->set_name(name);
  }
  connection.send(open);
  wire::Envelope opened = co_await reply_to(connection, 1);
  if (opened.has_error())
    throw Error("the master refused the program: " + opened.error().message());
  if (!opened.has_job_opened()) throw Error("the master answered OpenJob unexpectedly");
  if (opened.job_opened().need_image() && !common::send_image(connection, spec.binary, sha256))
    throw ConfigError("cannot read " + spec.binary);

  wire::Envelope publish;
  publish.set_request_id(2);
  auto* request = publish.mutable_publish_service();
  auto* def = request->mutable_definition();
  def->set_name(spec.name);
  for (const auto& e : spec.entry_points) def->add_entry_points(e);
  def->set_port(static_cast<std::uint32_t>(spec.port));
  def->set_bind(spec.bind);
  def->set_replicas(static_cast<std::uint32_t>(spec.replicas));
  for (const auto& p : spec.packages) def->add_packages(p);
  def->set_max_body(spec.max_body);
  def->set_timeout_ms(static_cast<std::uint32_t>(spec.timeout.count()));
  def->set_auth(services::auth_mode_name(spec.auth));
  def->set_service_key(key);
  request->set_exports_json(std::move(exports_json));
  connection.send(publish);
  wire::Envelope answer = co_await reply_to(connection, 2);
  connection.close("done");
  if (answer.has_error()) throw Error(answer.error().message());
  if (!answer.has_service_published())
    throw Error("the master answered PublishService unexpectedly");
  co_return answer.service_published();
}

awaitable<wire::Envelope> ask(common::DialOptions dial, wire::Envelope request) {
  auto dialed = co_await common::dial_master(dial);
  request.set_request_id(1);
  dialed.connection->send(request);
  wire::Envelope reply = co_await reply_to(*dialed.connection, 1);
  dialed.connection->close("done");
  co_return reply;
}

// While a publish is in progress (`*publishing`), asks the master for its services' status
// every 200 ms on a connection of its own and reports `name`'s replicas as they pass their
// readiness check (on stderr). Errors only end the watching: the publish reports its own.
awaitable<void> watch_rollout(common::DialOptions dial, std::string name,
                              std::shared_ptr<bool> publishing, std::shared_ptr<int> shown) {
  try {
    auto dialed = co_await common::dial_master(dial);
    common::asio::steady_timer timer(co_await common::asio::this_coro::executor);
    std::uint64_t request_id = 0;
    bool announced = false;
    while (*publishing) {
      wire::Envelope request;
      request.set_request_id(++request_id);
      request.mutable_services_request();
      dialed.connection->send(request);
      const wire::Envelope reply = co_await reply_to(*dialed.connection, request_id);
      if (!*publishing) break;
      for (const auto& text : reply.services_reply().status_json()) {
        const nlohmann::json status = nlohmann::json::parse(text, nullptr, false);
        if (!status.is_object() || status.value("name", "") != name) continue;
        const nlohmann::json& rollout = status["rollout"];
        if (!rollout.is_object()) continue;
        const int replicas = rollout.value("replicas", 0);
        const int ready = rollout.value("ready", 0);
        if (!announced) {
          std::cerr << "service " << name << " version " << rollout.value("version", 0)
                    << ": starting " << replicas << " replica(s)\n";
          announced = true;
        }
        if (ready > *shown) {
          std::vector<std::string> servers = rollout.value("servers", std::vector<std::string>{});
          std::cerr << "  replicas " << ready << "/" << replicas << " ready ("
                    << (servers.empty() ? "-" : join(servers)) << ")\n";
          *shown = ready;
        }
      }
      timer.expires_after(std::chrono::milliseconds(200));
      co_await timer.async_wait(common::asio::use_awaitable);
    }
    dialed.connection->close("done");
  } catch (const std::exception&) {
  }
}

template <class Awaitable>
auto run_blocking(Awaitable&& work) {
  common::asio::io_context io(1);
  auto result = common::asio::co_spawn(io, std::forward<Awaitable>(work), common::asio::use_future);
  io.run();
  return result.get();
}

std::string read_key(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read the service key file " + path);
  std::string key;
  std::getline(in, key);
  while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) key.pop_back();
  if (key.size() < 16)
    throw ConfigError("the service key in " + path + " is shorter than 16 characters");
  return key;
}

}  // namespace

std::string describe_program_exports(const std::string& binary) {
  if (::access(binary.c_str(), X_OK) != 0)
    throw ConfigError("binary " + binary + " is not an executable file");
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw Error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (!std::string_view(*e).starts_with("CLUPY_")) env_strings.emplace_back(*e);
  env_strings.emplace_back("CLUPY_DESCRIBE_EXPORTS=1");
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string arg0 = binary;
  char* argv[] = {arg0.data(), nullptr};
  pid_t pid = 0;
  const int spawned = ::posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (spawned != 0) {
    ::close(pipe_fds[0]);
    throw ConfigError("cannot start " + binary + ": " + std::strerror(spawned));
  }
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  char buffer[4096];
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{pipe_fds[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
    if (n <= 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(pipe_fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const std::string how =
      timed_out                  ? "did not finish in 30 s"
      : WIFSIGNALED(status)      ? "was killed by signal " + std::to_string(WTERMSIG(status))
      : WEXITSTATUS(status) != 0 ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                 : "";
  // The description is the last line the program printed (it may print before clupy::init).
  std::string last = out;
  while (!last.empty() && last.back() == '\n') last.pop_back();
  if (auto nl = last.rfind('\n'); nl != std::string::npos) last = last.substr(nl + 1);
  if (!how.empty() || !nlohmann::json::accept(last))
    throw ConfigError(
        binary + " did not describe its exports" + (how.empty() ? "" : " (it " + how + ")") +
        ": does its main() call clupy::init(argc, argv) first? Its output: " + out.substr(0, 500));
  return last;
}

int publish_command(const std::string& service_file, const ConnectOptions& options) {
  const services::ServiceSpec spec = services::load_service_spec(service_file);
  const std::string exports = describe_program_exports(spec.binary);
  const auto names = services::exported_names(exports);
  for (const auto& e : spec.entry_points)
    if (std::find(names.begin(), names.end(), e) == names.end())
      throw ConfigError(service_file + ": entry point '" + e + "' is not exported by " +
                        spec.binary + " (it exports: " + (names.empty() ? "nothing" : join(names)) +
                        "); add CLUPY_EXPORT(" + e + ", <parameter names>) to the program");
  const std::string key = spec.auth == services::AuthMode::kKey ? read_key(spec.key_file) : "";
  auto sha = base::sha256_file(spec.binary);
  if (!sha) throw ConfigError("cannot read " + spec.binary);
  const common::DialOptions dial = admin_dial_options(options);
  // The publish and, beside it, a watch that shows the replicas coming up.
  auto publishing = std::make_shared<bool>(true);
  auto shown = std::make_shared<int>(0);
  common::asio::io_context io(1);
  auto publish = [&]() -> awaitable<wire::ServicePublished> {
    try {
      wire::ServicePublished done = co_await publish_on(dial, spec, exports, key, *sha);
      *publishing = false;
      co_return done;
    } catch (...) {
      *publishing = false;
      throw;
    }
  };
  auto result = common::asio::co_spawn(io, publish(), common::asio::use_future);
  common::asio::co_spawn(io, watch_rollout(dial, spec.name, publishing, shown),
                         common::asio::detached);
  io.run();
  const wire::ServicePublished published = result.get();
  if (*shown < spec.replicas)
    std::cerr << "  replicas " << spec.replicas << "/" << spec.replicas << " ready ("
              << join({published.servers().begin(), published.servers().end()}) << ")\n";
  std::cerr << "service " << spec.name << " version " << published.version() << " ready on "
            << published.servers_size()
            << " server(s): " << join({published.servers().begin(), published.servers().end()})
            << "\n";
  std::cout << published.url() << std::endl;
  return 0;
}

int unpublish_command(const std::string& name, const ConnectOptions& options) {
  wire::Envelope request;
  request.mutable_unpublish_service()->set_name(name);
  const wire::Envelope reply = run_blocking(ask(admin_dial_options(options), request));
  if (reply.has_error()) throw Error(reply.error().message());
  std::cerr << "service " << name << " unpublished\n";
  return 0;
}

int services_command(const ConnectOptions& options, bool json) {
  wire::Envelope request;
  request.mutable_services_request();
  const wire::Envelope reply = run_blocking(ask(admin_dial_options(options), request));
  if (reply.has_error()) throw Error(reply.error().message());
  nlohmann::json all = nlohmann::json::array();
  for (const auto& s : reply.services_reply().status_json())
    all.push_back(nlohmann::json::parse(s));
  if (json) {
    std::cout << all.dump(2) << "\n";
    return 0;
  }
  std::printf("%-16s %-9s %7s %8s %-28s %8s %8s %8s %8s\n", "SERVICE", "STATE", "VERSION",
              "REPLICAS", "URL", "REQ/S", "REQUESTS", "ERRORS", "P99 MS");
  for (const auto& s : all) {
    std::printf("%-16s %-9s %7d %8d %-28s %8.1f %8llu %8llu %8.2f\n",
                s["name"].get<std::string>().c_str(), s["state"].get<std::string>().c_str(),
                s["version"].get<int>(), s["replicas"].get<int>(),
                s["url"].get<std::string>().c_str(), s["requests_per_s"].get<double>(),
                static_cast<unsigned long long>(s["requests"].get<std::uint64_t>()),
                static_cast<unsigned long long>(s["errors"].get<std::uint64_t>()),
                s["p99_ms"].get<double>());
    std::printf("%-16s servers: %s\n", "", s["servers"].dump().c_str());
    if (s.contains("error"))
      std::printf("%-16s error: %s\n", "", s["error"].get<std::string>().c_str());
  }
  return 0;
}

}  // namespace clupy::client
