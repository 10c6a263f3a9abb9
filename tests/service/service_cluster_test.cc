// Published services on a real cluster (a clupy --master and two clupy --serve processes),
// published with the clupy command and called over real HTTP (a Boost.Beast client).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cluster_fixture.hpp"
#include "http_client.hpp"

namespace clupy::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kServiceKey = "service-key-0123456789abcdef";

class ServiceClusterTest : public ClusterFixture {
 protected:
  // What the master starts with (a fixture for a case may add to it).
  virtual std::vector<std::string> master_args() { return {}; }
  void SetUp() override {
    start_master(master_args());
    start_server("s1");
    start_server("s2");
    ASSERT_TRUE(servers_become({"s1", "s2"}));
    write_file(dir_.file("service.key"), std::string(kServiceKey) + "\n");
  }

  // Writes a service file for `binary` and the extra keys `more`.
  std::string service_file(const std::string& name, const std::string& binary, int port,
                           const std::string& more = "") {
    const std::string path = dir_.file(name + ".yaml");
    write_file(path, "name: " + name + "\nbinary: " + binary +
                         "\nentry_points: [add, summarize, tally, fail, sleep_ms, version, "
                         "replica_pid]\nport: " +
                         std::to_string(port) + "\nbind: 127.0.0.1\n" + more);
    return path;
  }

  int publish(const std::string& file, std::string& output) {
    return run_cli({"--publish", file, "--master-url", master_url(), "--token-file", token_file()},
                   output);
  }

  std::string token() {
    std::string t = read_file(token_file());
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
    return t;
  }

  // The worker processes a server started (its children).
  static std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> children;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      const std::string name = entry.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream stat(entry.path() / "stat");
      std::string text;
      std::getline(stat, text);
      const auto close = text.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(text.substr(close + 2));
      std::string state;
      long ppid = 0;
      rest >> state >> ppid;
      if (ppid == parent && state != "Z") children.push_back(std::stoi(name));
    }
    return children;
  }
};

bool port_is_free(int port) {
  asio::io_context io;
  tcp::acceptor acceptor(io);
  boost::system::error_code ec;
  acceptor.open(tcp::v4(), ec);
  acceptor.bind(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)), ec);
  return !ec;
}

TEST_F(ServiceClusterTest, EveryEntryPointAnswersGoodBodiesAndEachKindOfBadOne) {
  const int port = free_loopback_port();
  std::string output;
  ASSERT_EQ(publish(service_file("calc", SERVICE_PROGRAM_V1, port,
                                 "replicas: 2\nmax_body: 4KiB\ntimeout: 1s\nauth: {key_file: " +
                                     dir_.file("service.key") + "}\n"),
                    output),
            0)
      << output;
  EXPECT_NE(output.find("http://127.0.0.1:" + std::to_string(port) + "/"), std::string::npos)
      << output;
  EXPECT_NE(output.find("ready on 2 server(s)"), std::string::npos) << output;

  HttpClient client(port, std::string("Bearer ") + kServiceKey);
  // Good bodies, positional and named.
  auto r = client.post("/add", "[2, 40]");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "42");
  r = client.post("/add", R"({"b": 1, "a": -3})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "-2");
  r = client.post("/summarize", R"({"reading": {"sensor": "t1", "values": [1, 2, 6]}})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json(), nlohmann::json::parse(R"({"sensor": "t1", "mean": 3.0, "count": 3})"));
  r = client.post("/tally", R"([["a", "b", "a"]])");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json(), nlohmann::json::parse(R"({"a": 2, "b": 1})"));
  r = client.post("/version", "[]");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "1");
  r = client.post("/sleep_ms", "[10]");
  EXPECT_EQ(r.status, 200) << r.body;

  // Each kind of bad body, with a message that names the argument.
  auto expect_error = [&](const std::string& path, const std::string& body, int status,
                          const std::string& message) {
    auto answer = client.post(path, body);
    EXPECT_EQ(answer.status, status) << path << " " << body << ": " << answer.body;
    EXPECT_EQ(answer.json().value("error", std::string("(no error field)")), message)
        << answer.body;
  };
  expect_error("/add", R"([1, "two"])", 400, "argument 'b': expected an integer, got a string");
  expect_error("/add", R"({"a": 1})", 400, "missing argument 'b' (integer): add(a, b)");
  expect_error("/add", R"({"a": 1, "b": 2, "c": 3})", 400, "unknown argument 'c': add(a, b)");
  expect_error("/add", "[1, 2, 3]", 400, "add(a, b) takes 2 argument(s); the body has 3");
  expect_error("/add", "{not json", 400,
               "the body is not JSON: send an array of the arguments or an object of them");
  expect_error("/summarize", R"([{"sensor": "t", "values": [1, "x"]}])", 400,
               "argument 'reading'.values[1]: expected a number, got a string");
  expect_error("/tally", "[[" + std::string(5000, ' ') + "]]", 413,
               "the body is larger than max_body (4096 bytes)");
  expect_error("/nope", "[]", 404, "no entry point 'nope' (GET /openapi.json lists them)");
  expect_error("/fail", R"(["on purpose"])", 500, "on purpose");
  EXPECT_EQ(client.post("/fail", R"(["again"])").json()["type"], "std::runtime_error");
  // Credentials: the key and the cluster token open it; nothing or a wrong key does not.
  EXPECT_EQ(HttpClient(port).post("/add", "[1, 1]").status, 401);
  EXPECT_EQ(HttpClient(port, "Bearer wrong-key-0123456789").post("/add", "[1, 1]").status, 401);
  EXPECT_EQ(HttpClient(port).get("/status").status, 401);
  EXPECT_EQ(HttpClient(port, "Bearer " + token()).post("/add", "[1, 1]").body, "2");
  EXPECT_EQ(HttpClient(port).get("/health").status, 200);
  EXPECT_EQ(client.get("/ready").status, 200);

  // /status counts what was called.
  auto status = client.get("/status").json();
  EXPECT_EQ(status["requests"], 17);
  EXPECT_EQ(status["name"], "calc");
  EXPECT_EQ(status["state"], "ready");
  EXPECT_EQ(status["version"], 1);
  EXPECT_EQ(status["servers"].size(), 2u) << status.dump();
  const auto& add = status["entries"]["add"];
  EXPECT_EQ(add["requests"], 8) << status.dump(2);  // 2 good, 5 bad, 1 with the token
  EXPECT_EQ(add["errors"], 5);
  EXPECT_EQ(add["by_status"]["200"], 3);
  EXPECT_EQ(add["by_status"]["400"], 5);
  EXPECT_EQ(status["entries"]["fail"]["by_status"]["500"], 2);
  EXPECT_EQ(status["entries"]["(too large)"]["by_status"]["413"], 1);
  EXPECT_GT(add["latency_ms"]["p50"].get<double>(), 0);

  // /metrics says the same in Prometheus text.
  auto metrics = client.get("/metrics");
  EXPECT_EQ(metrics.status, 200);
  for (const std::string line :
       {"clupy_service_requests_total{service=\"calc\",entry=\"add\",status=\"200\"} 3",
        "clupy_service_requests_total{service=\"calc\",entry=\"add\",status=\"400\"} 5",
        "clupy_service_errors_total{service=\"calc\",entry=\"fail\"} 2",
        "clupy_service_request_seconds_count{service=\"calc\",entry=\"add\"} 8",
        "clupy_service_in_flight{service=\"calc\"} 0", "clupy_service_version{service=\"calc\"} 1"})
    EXPECT_NE(metrics.body.find(line + "\n"), std::string::npos) << line << "\n" << metrics.body;

  // /openapi.json describes the exported signatures.
  auto openapi = client.get("/openapi.json").json();
  EXPECT_EQ(openapi["openapi"], "3.1.0");
  const auto& add_schema =
      openapi["paths"]["/add"]["post"]["requestBody"]["content"]["application/json"]["schema"];
  EXPECT_EQ(add_schema["oneOf"][0]["properties"]["a"]["type"], "integer") << add_schema.dump();
  EXPECT_EQ(add_schema["oneOf"][0]["required"], nlohmann::json({"a", "b"}));
  EXPECT_EQ(openapi["paths"]["/summarize"]["post"]["responses"]["200"]["content"]
                   ["application/json"]["schema"]["properties"]["mean"]["type"],
            "number");
  EXPECT_EQ(openapi["paths"].size(), 7u);

  // clupy services lists it with its counts.
  ASSERT_EQ(
      run_cli({"services", "--json", "--master-url", master_url(), "--token-file", token_file()},
              output),
      0)
      << output;
  auto listed = nlohmann::json::parse(output.substr(output.find('[')), nullptr, false);
  ASSERT_TRUE(listed.is_array()) << output;
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["name"], "calc");
  EXPECT_EQ(listed[0]["requests"], status["requests"]);

  // Last: a call that outlives the timeout. (Calls that a server had queued behind it on the
  // same replica process fail with it when the process is stopped: docs/services.md.)
  auto slow = client.post("/sleep_ms", "[3000]");
  EXPECT_EQ(slow.status, 504) << slow.body;
  EXPECT_EQ(client.get("/status").json()["entries"]["sleep_ms"]["by_status"]["504"], 1);
}

TEST_F(ServiceClusterTest, PublishingFailsWithAMessageThatNamesTheProblem) {
  std::string output;
  // Not enough servers.
  EXPECT_NE(publish(service_file("big", SERVICE_PROGRAM_V1, 0, "replicas: 3\n"), output), 0);
  EXPECT_NE(output.find("not enough servers: service big asks for 3 replica(s) and the cluster "
                        "has 2 connected server(s)"),
            std::string::npos)
      << output;
  // An entry point the program does not export.
  const std::string unknown = dir_.file("unknown.yaml");
  write_file(unknown, std::string("name: unknown\nbinary: ") + SERVICE_PROGRAM_V1 +
                          "\nentry_points: [add, multiply]\n");
  EXPECT_NE(publish(unknown, output), 0);
  EXPECT_NE(output.find("entry point 'multiply' is not exported by"), std::string::npos) << output;
  EXPECT_NE(output.find("add CLUPY_EXPORT(multiply"), std::string::npos) << output;
  // A YAML mistake: file, line, key.
  const std::string mistake = dir_.file("mistake.yaml");
  write_file(mistake, std::string("name: m\nbinary: ") + SERVICE_PROGRAM_V1 +
                          "\nentry_points: [add]\nreplicas: many\n");
  EXPECT_NE(publish(mistake, output), 0);
  EXPECT_NE(output.find(mistake + ":4: key 'replicas'"), std::string::npos) << output;
  // The port taken.
  asio::io_context io;
  tcp::acceptor taken(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const int taken_port = taken.local_endpoint().port();
  EXPECT_NE(publish(service_file("clash", SERVICE_PROGRAM_V1, taken_port), output), 0);
  EXPECT_NE(output.find("port " + std::to_string(taken_port) + " on 127.0.0.1 is taken"),
            std::string::npos)
      << output;
  // A replica that crashes at start: its output tail is in the message.
  EXPECT_NE(publish(service_file("crashing", SERVICE_PROGRAM_CRASHING, 0), output), 0);
  EXPECT_NE(output.find("failed its readiness check"), std::string::npos) << output;
  EXPECT_NE(output.find("crashing on purpose at start"), std::string::npos) << output;
  // Packages its master's manifest does not list (and allow_client_packages is false).
  EXPECT_NE(publish(service_file("pkg", SERVICE_PROGRAM_V1, 0, "packages: [libc6]\n"), output), 0);
  EXPECT_NE(output.find("this master takes no packages from jobs that its dependency manifest "
                        "does not list (allow_client_packages: false): libc6"),
            std::string::npos)
      << output;
  // None of them is listed.
  ASSERT_EQ(
      run_cli({"services", "--json", "--master-url", master_url(), "--token-file", token_file()},
              output),
      0);
  EXPECT_NE(output.find("[]"), std::string::npos) << output;
}

// A master whose manifest accepts jobs' packages, with an install command that installs nothing
// (and says so): packages this machine has are present on both servers, any other fails.
class ServicePackagesTest : public ServiceClusterTest {
 protected:
  std::vector<std::string> master_args() override {
    write_file(dir_.file("deps.yaml"),
               "allow_client_packages: true\n"
               "install_command: \"sh -c 'echo no repository here for $0 >&2; exit 3' "
               "{packages}\"\n");
    return {"--dependency-file", dir_.file("deps.yaml")};
  }
};

TEST_F(ServicePackagesTest, EveryServerSettlesTheServicesPackagesBeforeItsReplicasStart) {
  const int port = free_loopback_port();
  std::string output;
  ASSERT_EQ(publish(service_file("present", SERVICE_PROGRAM_V1, port,
                                 "replicas: 2\nauth: public\npackages: [libc6, dpkg]\n"),
                    output),
            0)
      << output << "\nmaster log:\n"
      << master_.log();
  EXPECT_NE(output.find("ready on 2 server(s)"), std::string::npos) << output;
  HttpClient client(port);
  auto r = client.post("/add", "[2, 40]");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "42");
  const std::string log = master_.log();
  EXPECT_NE(log.find("server s1 has the job's packages"), std::string::npos) << log;
  EXPECT_NE(log.find("server s2 has the job's packages"), std::string::npos) << log;

  // A package no server can install: publishing fails with each server's reason.
  EXPECT_NE(publish(service_file("absent", SERVICE_PROGRAM_V1, 0,
                                 "replicas: 1\npackages: [clupy-test-absent]\n"),
                    output),
            0);
  EXPECT_NE(output.find("no server can install this job's packages: server s1: "
                        "clupy-test-absent: failed: the install command failed (exit code 3)"),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("no repository here for clupy-test-absent"), std::string::npos) << output;
  ASSERT_EQ(
      run_cli({"services", "--json", "--master-url", master_url(), "--token-file", token_file()},
              output),
      0);
  EXPECT_EQ(output.find("absent"), std::string::npos) << output;
}

TEST_F(ServiceClusterTest, UnpublishFreesThePort) {
  const int port = free_loopback_port();
  std::string output;
  ASSERT_EQ(publish(service_file("calc", SERVICE_PROGRAM_V1, port, "auth: public\n"), output), 0)
      << output;
  EXPECT_EQ(HttpClient(port).post("/add", "[1, 2]").body, "3");
  EXPECT_FALSE(port_is_free(port));
  ASSERT_EQ(
      run_cli({"--unpublish", "calc", "--master-url", master_url(), "--token-file", token_file()},
              output),
      0)
      << output;
  EXPECT_TRUE(port_is_free(port));
  EXPECT_EQ(HttpClient(port).post("/add", "[1, 2]").status, 0);
  EXPECT_NE(
      run_cli({"--unpublish", "calc", "--master-url", master_url(), "--token-file", token_file()},
              output),
      0);
  EXPECT_NE(output.find("no service named 'calc' is published"), std::string::npos) << output;
  // Published again on the same port.
  ASSERT_EQ(publish(service_file("calc", SERVICE_PROGRAM_V1, port, "auth: public\n"), output), 0)
      << output;
  EXPECT_EQ(HttpClient(port).post("/add", "[2, 2]").body, "4");
}

// Runs `threads` clients calling POST /version until `stop`; counts answers by version and
// failures.
struct Load {
  Load(int port, int threads) {
    for (int t = 0; t < threads; ++t)
      workers.emplace_back([this, port] {
        HttpClient client(port);
        bool saw_v2 = false;
        while (!stop.load()) {
          auto r = client.post("/version", "[]");
          if (r.status == 200) {
            (r.body == "2" ? v2 : v1).fetch_add(1);
            if (r.body == "2") saw_v2 = true;
            if (r.body == "1" && saw_v2) back_to_v1.fetch_add(1);
          } else {
            failed.fetch_add(1);
            std::lock_guard lock(mu);
            if (failures.size() < 10) failures.push_back(std::to_string(r.status) + " " + r.body);
          }
          total.fetch_add(1);
        }
      });
  }
  ~Load() { finish(); }
  void finish() {
    stop = true;
    for (auto& w : workers)
      if (w.joinable()) w.join();
  }
  std::string failure_list() {
    std::lock_guard lock(mu);
    std::string out;
    for (const auto& f : failures) out += f + "\n";
    return out;
  }
  std::atomic<bool> stop{false};
  std::atomic<int> v1{0}, v2{0}, failed{0}, total{0};
  std::atomic<int> back_to_v1{0};  // a v1 answer to a client that had had a v2 answer
  std::mutex mu;
  std::vector<std::string> failures;
  std::vector<std::thread> workers;
};

TEST_F(ServiceClusterTest, PublishShowsReplicasComingUp) {
  // Two servers whose replicas take 0.4 s and 3 s to start, one slot each: one replica each (the
  // gap is wide enough that a loaded machine still reports them one at a time).
  for (const char* id : {"s1", "s2"}) {
    servers_[id].signal(SIGTERM);
    ASSERT_TRUE(servers_[id].wait(10s));
  }
  start_server("quick", {"--capacity", "1"}, {{"SERVICE_START_DELAY_MS", "400"}});
  start_server("slow", {"--capacity", "1"}, {{"SERVICE_START_DELAY_MS", "3000"}});
  ASSERT_TRUE(servers_become({"quick", "slow"}));
  std::string output;
  ASSERT_EQ(
      publish(service_file("up", SERVICE_PROGRAM_V1, 0, "replicas: 2\nauth: public\n"), output), 0)
      << output;
  const auto starting = output.find("service up version 1: starting 2 replica(s)\n");
  const auto first = output.find("  replicas 1/2 ready (quick)\n");
  const auto second = output.find("  replicas 2/2 ready (quick, slow)\n");
  const auto done = output.find("service up version 1 ready on 2 server(s)");
  EXPECT_NE(starting, std::string::npos) << output;
  EXPECT_NE(first, std::string::npos) << output;
  EXPECT_NE(second, std::string::npos) << output;
  EXPECT_NE(done, std::string::npos) << output;
  EXPECT_TRUE(starting < first && first < second && second < done) << output;
}

TEST_F(ServiceClusterTest, RollingUpdateLosesNoRequestAndSwitchesVersions) {
  const int port = free_loopback_port();
  std::string output;
  ASSERT_EQ(publish(service_file("roll", SERVICE_PROGRAM_V1, port, "replicas: 2\nauth: public\n"),
                    output),
            0)
      << output;
  Load load(port, 4);
  ASSERT_TRUE(wait_until([&] { return load.v1.load() >= 200; }, 30s, "v1 answers"));
  ASSERT_EQ(publish(service_file("roll", SERVICE_PROGRAM_V2, port, "replicas: 2\nauth: public\n"),
                    output),
            0)
      << output;
  EXPECT_NE(output.find("version 2 ready"), std::string::npos) << output;
  const int v2_at_publish = load.v2.load();
  ASSERT_TRUE(wait_until([&] { return load.v2.load() >= v2_at_publish + 200; }, 30s,
                         "v2 answers after the update"))
      << "v1 " << load.v1.load() << " v2 " << load.v2.load() << " failed " << load.failed.load()
      << "\n"
      << load.failure_list()
      << master_.log().substr(master_.log().size() > 6000 ? master_.log().size() - 6000 : 0);
  ASSERT_TRUE(wait_until([&] { return load.v2.load() >= v2_at_publish + 400; }, 30s, "more v2"))
      << "v1 " << load.v1.load() << " v2 " << load.v2.load() << " failed " << load.failed.load();
  load.finish();
  EXPECT_EQ(load.failed.load(), 0) << load.failure_list();
  // Each client's answers switch once: calls it sent after its first v2 answer never reach v1
  // (its v1 calls in flight at the switch may still finish later, and that is fine).
  EXPECT_EQ(load.back_to_v1.load(), 0);
  EXPECT_GT(load.v2.load(), 0);
  auto status = HttpClient(port).get("/status").json();
  EXPECT_EQ(status["version"], 2);
  std::printf("rolling update: %d requests, %d by v1, %d by v2, %d failed\n", load.total.load(),
              load.v1.load(), load.v2.load(), load.failed.load());
}

TEST_F(ServiceClusterTest, AKilledReplicaFailsAtMostItsInFlightRequestsAndComesBack) {
  const int port = free_loopback_port();
  std::string output;
  ASSERT_EQ(publish(service_file("kill", SERVICE_PROGRAM_V1, port, "replicas: 2\nauth: public\n"),
                    output),
            0)
      << output;
  constexpr int kThreads = 4;
  Load load(port, kThreads);
  ASSERT_TRUE(wait_until([&] { return load.v1.load() >= 200; }, 30s, "answers"));
  // The replica processes: children of the servers running the service's program.
  std::vector<pid_t> replicas;
  for (auto& [id, server] : servers_)
    for (pid_t pid : children_of(server.pid())) replicas.push_back(pid);
  ASSERT_FALSE(replicas.empty());
  const pid_t victim = replicas.front();
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  const int at_kill = load.total.load();
  ASSERT_TRUE(wait_until([&] { return load.total.load() >= at_kill + 500; }, 30s,
                         "answers after the kill"));
  load.finish();
  // A killed replica can have held at most one call per client connection.
  EXPECT_LE(load.failed.load(), kThreads) << load.failure_list();
  // The service still has replicas on both servers: a new process replaced the killed one.
  std::set<long> pids;
  HttpClient client(port);
  for (int i = 0; i < 50; ++i) pids.insert(std::stol(client.post("/replica_pid", "[]").body));
  EXPECT_EQ(pids.count(victim), 0u);
  EXPECT_FALSE(pids.empty());
  std::printf("killed replica %d: %d requests, %d failed\n", victim, load.total.load(),
              load.failed.load());
}

}  // namespace
}  // namespace clupy::test

namespace clupy::test {
namespace {

TEST_F(ServiceClusterTest, ALostServersReplicasAreReplacedElsewhere) {
  start_server("s3");
  ASSERT_TRUE(servers_become({"s1", "s2", "s3"}));
  const int port = free_loopback_port();
  std::string output;
  ASSERT_EQ(publish(service_file("lose", SERVICE_PROGRAM_V1, port, "replicas: 2\nauth: public\n"),
                    output),
            0)
      << output;
  constexpr int kThreads = 4;
  Load load(port, kThreads);
  ASSERT_TRUE(wait_until([&] { return load.v1.load() >= 200; }, 30s, "answers"));
  // The servers running replicas: those with children (worker processes).
  std::vector<std::string> with_replicas;
  for (auto& [id, server] : servers_)
    if (!children_of(server.pid()).empty()) with_replicas.push_back(id);
  ASSERT_FALSE(with_replicas.empty());
  const std::string victim = with_replicas.front();
  const std::vector<pid_t> victim_workers = children_of(servers_[victim].pid());
  servers_[victim].kill();  // SIGKILL: the server and, with it, its link to its workers
  for (pid_t pid : victim_workers) ::kill(pid, SIGKILL);
  const int at_kill = load.total.load();
  ASSERT_TRUE(wait_until([&] { return load.total.load() >= at_kill + 500; }, 30s,
                         "answers after the server was lost"));
  load.finish();
  // Calls the lost server held fail (503); every connection held at most one.
  EXPECT_LE(load.failed.load(), kThreads) << load.failure_list();
  // Replicas now run on the two other servers.
  std::set<std::string> serving;
  for (auto& [id, server] : servers_)
    if (id != victim && !children_of(server.pid()).empty()) serving.insert(id);
  EXPECT_EQ(serving.size(), 2u) << "servers with replicas after the loss";
  std::printf("lost server %s: %d requests, %d failed\n", victim.c_str(), load.total.load(),
              load.failed.load());
}

}  // namespace
}  // namespace clupy::test

namespace clupy::test {
namespace {

TEST_F(ServiceClusterTest, CppCallersReachTheServiceOverTheClusterProtocol) {
  const int port = free_loopback_port();
  std::string output;
  ASSERT_EQ(publish(service_file("calc", SERVICE_PROGRAM_V1, port, "replicas: 2\n"), output), 0)
      << output;
  const std::string out = run_client_program(SERVICE_CLIENT_PROGRAM, "client", {});
  EXPECT_EQ(line_after(out, "sum: "), std::to_string(100 * 1000 + 99 * 100 / 2)) << out;
  EXPECT_EQ(line_after(out, "version: "), "1") << out;
  EXPECT_NE(line_after(out, "fail: ").find("std::runtime_error"), std::string::npos) << out;
  EXPECT_NE(line_after(out, "fail: ").find("from C++"), std::string::npos) << out;
  EXPECT_EQ(line_after(out, "unknown: "), "no service named 'nope' is published") << out;

  // The front counts them beside HTTP requests, with the status HTTP would have given.
  HttpClient client(port, "Bearer " + token());
  const auto status = client.get("/status");
  ASSERT_EQ(status.status, 200) << status.body;
  const auto entries = status.json()["entries"];
  EXPECT_EQ(entries["add"]["requests"], 100) << status.body;
  EXPECT_EQ(entries["add"]["by_status"]["200"], 100) << status.body;
  EXPECT_EQ(entries["fail"]["by_status"]["500"], 1) << status.body;
  EXPECT_EQ(entries["version"]["requests"], 1) << status.body;
  EXPECT_EQ(status.json()["in_flight"], 0) << status.body;
  const auto metrics = client.get("/metrics");
  EXPECT_NE(metrics.body.find("entry=\"add\""), std::string::npos) << metrics.body;
}

}  // namespace
}  // namespace clupy::test
