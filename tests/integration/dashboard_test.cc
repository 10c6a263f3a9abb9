// The master's dashboard against a real cluster (docs/operations.md#dashboard): the JSON the
// page polls, the tasks' kept output and `clupy logs`, its bounds, the history that survives a
// crash of the master, who may read it (token, cookie, loopback), and the /metrics it adds.
#include <signal.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cluster_fixture.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

struct HttpAnswer {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
  std::string header(const std::string& name) const {
    const std::string key = "\r\n" + name + ": ";
    const std::size_t at = head.find(key);
    if (at == std::string::npos) return "";
    const std::size_t start = at + key.size();
    return head.substr(start, head.find("\r\n", start) - start);
  }
  nlohmann::json json() const { return nlohmann::json::parse(body); }
};

HttpAnswer http(int port, const std::string& method, const std::string& target,
                const std::string& headers = "", const std::string& body = "") {
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: x\r\n" + headers;
  if (method == "POST")
    request += "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n";
  const std::string raw = tcp_exchange(port, request + "\r\n" + body, seconds(10));
  HttpAnswer answer;
  if (raw.size() < 12) return answer;
  answer.status = std::stoi(raw.substr(9, 3));
  const std::size_t split = raw.find("\r\n\r\n");
  answer.head = raw.substr(0, split);
  if (split != std::string::npos) answer.body = raw.substr(split + 4);
  return answer;
}

class DashboardTest : public ClusterFixture {
 protected:
  void start(const std::string& yaml = "", int port = 0) {
    if (http_port_ == 0) http_port_ = free_loopback_port();
    write_file(dir_.file("master.yaml"), yaml);
    start_master({"--config", dir_.file("master.yaml"), "--http-port", std::to_string(http_port_)},
                 port);
  }
  HttpAnswer get(const std::string& target, const std::string& headers = "") {
    return http(http_port_, "GET", target, headers);
  }
  nlohmann::json dashboard() {
    const HttpAnswer answer = get("/api/dashboard");
    EXPECT_EQ(answer.status, 200) << answer.head << answer.body;
    return answer.status == 200 ? answer.json() : nlohmann::json::object();
  }
  static const nlohmann::json* function_named(const nlohmann::json& data, const std::string& part) {
    for (const auto& f : data["tasks"]["functions"])
      if (f["function"].get<std::string>().find(part) != std::string::npos) return &f;
    return nullptr;
  }
  std::string history_file() const { return dir_.file("clupy-master-data/dashboard/history.json"); }

  int http_port_ = 0;
};

TEST_F(DashboardTest, JsonShowsServersFunctionsClientsFailuresAndTheirOutput) {
  start();
  start_server("alpha", {"--capacity", "2", "--label", "zone=red"});
  ASSERT_TRUE(servers_become({"alpha"}));
  const std::string output =
      run_client_program(DASHBOARD_PROGRAM, "work", {"work", "6", "20", "2"});
  ASSERT_NE(output.find("DONE ok=6 failed=2"), std::string::npos) << output;

  const nlohmann::json data = dashboard();
  ASSERT_EQ(data["servers"].size(), 1u) << data.dump(2);
  const auto& server = data["servers"][0];
  EXPECT_EQ(server["server_id"], "alpha");
  EXPECT_EQ(server["state"], "connected");
  EXPECT_EQ(server["capacity"], 2);
  EXPECT_EQ(server["labels"]["zone"], "red");
  EXPECT_FALSE(server["version"].get<std::string>().empty());
  EXPECT_EQ(data["tasks"]["completed_total"], 6);
  EXPECT_EQ(data["tasks"]["failed_total"], 2);

  const nlohmann::json* sleeper = function_named(data, "prints_and_sleeps");
  ASSERT_NE(sleeper, nullptr) << data["tasks"]["functions"].dump(2);
  EXPECT_EQ((*sleeper)["completed"], 6);
  EXPECT_GE((*sleeper)["mean_ms"].get<double>(), 20.0);
  EXPECT_GE((*sleeper)["p99_ms"].get<double>(), 16.0);  // a bucket is 20 % wide
  const nlohmann::json* thrower = function_named(data, "prints_and_throws");
  ASSERT_NE(thrower, nullptr);
  EXPECT_EQ((*thrower)["failed"], 2);

  const auto& failures = data["tasks"]["failures"];
  ASSERT_EQ(failures.size(), 2u) << failures.dump(2);
  for (const auto& f : failures) {
    EXPECT_EQ(f["kind"], "exception");
    EXPECT_NE(f["type_name"].get<std::string>().find("runtime_error"), std::string::npos);
    EXPECT_NE(f["message"].get<std::string>().find("dashboard boom"), std::string::npos);
    EXPECT_EQ(f["server"], "alpha");
    EXPECT_NE(f["function"].get<std::string>().find("prints_and_throws"), std::string::npos);
    EXPECT_TRUE(f["has_output"].get<bool>());
  }
  // The failed task's output, as the page fetches it and as `clupy logs` prints it; the ids
  // are the ones the program's failures name.
  const std::string failed_line = line_after(output, "FAILED ");
  ASSERT_FALSE(failed_line.empty()) << output;
  const std::string task = failed_line.substr(0, failed_line.find(' '));
  const auto job = failures[0]["job_id"].get<std::uint64_t>();
  const HttpAnswer kept = get("/api/output?job=" + std::to_string(job) + "&task=" + task);
  ASSERT_EQ(kept.status, 200) << kept.body;
  const nlohmann::json lines = kept.json()["lines"];
  ASSERT_EQ(lines.size(), 2u) << lines.dump(2);
  // The two streams are separate pipes: their lines may arrive in either order.
  const auto has = [&](const std::string& text, bool is_stderr) {
    for (const auto& line : lines)
      if (line["text"].get<std::string>().find(text) != std::string::npos &&
          line["stderr"].get<bool>() == is_stderr)
        return true;
    return false;
  };
  EXPECT_TRUE(has("is about to fail", false)) << lines.dump(2);
  EXPECT_TRUE(has("the input is bad", true)) << lines.dump(2);

  const std::map<std::string, std::string> env = {{"CLUPY_TOKEN_FILE", token_file()}};
  std::string printed;
  ASSERT_EQ(run_cli({"logs", task, "--master-url", master_url()}, printed, env), 0) << printed;
  EXPECT_NE(printed.find("is about to fail"), std::string::npos) << printed;
  EXPECT_NE(printed.find("the input is bad"), std::string::npos) << printed;
  ASSERT_EQ(
      run_cli({"logs", std::to_string(job) + "." + task, "--master-url", master_url(), "--json"},
              printed, env),
      0);
  EXPECT_EQ(nlohmann::json::parse(printed)["lines"].size(), 2u) << printed;
  // A task that succeeded keeps its output too.
  ASSERT_EQ(run_cli({"logs", "1", "--master-url", master_url()}, printed, env), 0) << printed;
  EXPECT_NE(printed.find("says hello"), std::string::npos) << printed;
  EXPECT_EQ(run_cli({"logs", "99999", "--master-url", master_url()}, printed, env), 1);
  EXPECT_NE(printed.find("keeps no output of task 99999"), std::string::npos) << printed;
  EXPECT_EQ(run_cli({"logs", "x.y", "--master-url", master_url()}, printed, env), 2);
}

TEST_F(DashboardTest, TaskOutputKeepsTheConfiguredLinesAndTasksPerJob) {
  start("task_output_lines: 5\ntask_output_tasks_per_job: 3\n");
  start_server("alpha");
  ASSERT_TRUE(servers_become({"alpha"}));
  const std::string output = run_client_program(DASHBOARD_PROGRAM, "flood", {"flood", "5", "100"});
  ASSERT_NE(output.find("DONE flood"), std::string::npos) << output;
  // Tasks 1 and 2 were the job's oldest; 3 to 5 keep their last 5 lines each.
  EXPECT_EQ(get("/api/output?task=1").status, 404);
  EXPECT_EQ(get("/api/output?task=2").status, 404);
  for (int task = 3; task <= 5; ++task) {
    const HttpAnswer kept = get("/api/output?task=" + std::to_string(task));
    ASSERT_EQ(kept.status, 200) << task;
    const nlohmann::json json = kept.json();
    EXPECT_TRUE(json["truncated"].get<bool>());
    ASSERT_EQ(json["lines"].size(), 5u);
    EXPECT_EQ(json["lines"][0]["text"], "flood line 95");
    EXPECT_EQ(json["lines"][4]["text"], "flood line 99");
  }
  const nlohmann::json data = dashboard();
  EXPECT_EQ(data["tasks"]["output_tasks"], 3);
  EXPECT_LT(data["tasks"]["output_bytes"].get<std::size_t>(), 3u * 5u * 100u);
}

TEST_F(DashboardTest, CountsAndFailedTasksSurviveAMasterCrash) {
  start();
  start_server("alpha", {"--capacity", "2"});
  ASSERT_TRUE(servers_become({"alpha"}));
  const std::string output =
      run_client_program(DASHBOARD_PROGRAM, "work", {"work", "4", "10", "1"});
  ASSERT_NE(output.find("DONE ok=4 failed=1"), std::string::npos) << output;
  const auto job_before = dashboard()["tasks"]["failures"][0]["job_id"].get<std::uint64_t>();
  // Saved every 5 s: wait for the save that holds the failure and a sample with tasks, then
  // kill the master without a chance to save again.
  ASSERT_TRUE(wait_until(
      [&] {
        if (!std::filesystem::exists(history_file())) return false;
        const std::string saved = read_file(history_file());
        return saved.find("dashboard boom") != std::string::npos;
      },
      seconds(20), "the history file to hold the failure"));
  const int port = port_;
  master_.signal(SIGKILL);
  ASSERT_TRUE(master_.wait(seconds(10)));
  start("", port);

  const nlohmann::json data = dashboard();
  ASSERT_EQ(data["tasks"]["failures"].size(), 1u) << data["tasks"].dump(2);
  const auto& failure = data["tasks"]["failures"][0];
  EXPECT_NE(failure["message"].get<std::string>().find("dashboard boom 0"), std::string::npos);
  std::uint64_t submitted = 0;
  for (const auto& sample : data["tasks"]["samples"]) submitted += sample[2].get<std::uint64_t>();
  EXPECT_EQ(submitted, 5u) << data["tasks"]["samples"].dump();
  // The failed task's output came back with it.
  const HttpAnswer kept =
      get("/api/output?job=" + std::to_string(job_before) + "&task=" + failure["task_id"].dump());
  ASSERT_EQ(kept.status, 200) << kept.body;
  EXPECT_NE(kept.body.find("is about to fail"), std::string::npos) << kept.body;
  // Jobs after the restart get new ids, so `clupy logs JOB.TASK` never mixes two runs.
  ASSERT_TRUE(servers_become({"alpha"}));
  run_client_program(DASHBOARD_PROGRAM, "again", {"work", "1", "1", "1"});
  const nlohmann::json after = dashboard();
  ASSERT_EQ(after["tasks"]["failures"].size(), 2u);
  EXPECT_GT(after["tasks"]["failures"][0]["job_id"].get<std::uint64_t>(), job_before);
}

TEST_F(DashboardTest, OnlyTheTokenOrItsCookieOpensTheDashboardWithHttpAuthToken) {
  start("http_auth: token\n");
  std::string token = read_file(token_file());
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();

  // No token: the page is the sign-in form, the data is refused.
  HttpAnswer page = get("/");
  EXPECT_EQ(page.status, 401);
  EXPECT_NE(page.body.find("name=\"token\""), std::string::npos) << page.body;
  EXPECT_EQ(get("/api/dashboard").status, 401);
  EXPECT_EQ(get("/api/output?task=1").status, 401);
  EXPECT_EQ(get("/status").status, 401);
  // The page's own files hold nothing secret.
  EXPECT_EQ(get("/dashboard.js").status, 200);
  EXPECT_EQ(get("/dashboard.css").status, 200);

  // A wrong token, in the address or the form: refused, no cookie.
  HttpAnswer wrong = get("/?token=wrong");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.header("Set-Cookie"), "");
  EXPECT_NE(wrong.body.find("not the cluster token"), std::string::npos);
  wrong = http(http_port_, "POST", "/login", "", "token=wrong");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.header("Set-Cookie"), "");

  // The token once: a cookie that is not the token, and the address without it.
  const HttpAnswer signed_in = get("/?token=" + token);
  ASSERT_EQ(signed_in.status, 303) << signed_in.head;
  EXPECT_EQ(signed_in.header("Location"), "/");
  const std::string set_cookie = signed_in.header("Set-Cookie");
  EXPECT_NE(set_cookie.find("HttpOnly"), std::string::npos) << set_cookie;
  EXPECT_NE(set_cookie.find("SameSite=Strict"), std::string::npos) << set_cookie;
  EXPECT_EQ(set_cookie.find(token), std::string::npos) << "the cookie carries the token";
  const std::string cookie = set_cookie.substr(0, set_cookie.find(';'));
  ASSERT_EQ(cookie.rfind("clupy_dashboard=", 0), 0u) << cookie;
  const HttpAnswer form = http(http_port_, "POST", "/login", "", "token=" + token + "%0A");
  EXPECT_EQ(form.status, 303);
  EXPECT_EQ(form.header("Set-Cookie").substr(0, cookie.size()), cookie);

  // The cookie opens the page and the data; the page never shows the token.
  page = get("/", "Cookie: other=1; " + cookie + "\r\n");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("dashboard.js"), std::string::npos);
  EXPECT_EQ(page.body.find(token), std::string::npos);
  const HttpAnswer data = get("/api/dashboard", "Cookie: " + cookie + "\r\n");
  EXPECT_EQ(data.status, 200);
  EXPECT_EQ(data.body.find(token), std::string::npos);
  EXPECT_EQ(data.header("Cache-Control"), "no-store");
  EXPECT_EQ(get("/metrics", "Cookie: " + cookie + "\r\n").status, 200);
  // A forged cookie, and the bearer token as scripts send it.
  EXPECT_EQ(get("/api/dashboard", "Cookie: clupy_dashboard=00ff\r\n").status, 401);
  EXPECT_EQ(get("/api/dashboard", "Authorization: Bearer " + token + "\r\n").status, 200);
  // Signing out clears the cookie.
  const HttpAnswer out = get("/logout", "Cookie: " + cookie + "\r\n");
  EXPECT_EQ(out.status, 303);
  EXPECT_NE(out.header("Set-Cookie").find("Max-Age=0"), std::string::npos);
  EXPECT_EQ(http(http_port_, "PUT", "/").status, 405);
}

TEST_F(DashboardTest, LoopbackNeedsNoTokenByDefaultAndOffOpensAll) {
  start();  // http_auth: loopback
  EXPECT_EQ(get("/").status, 200);
  EXPECT_EQ(get("/api/dashboard").status, 200);
  master_.kill();
  start("http_auth: off\n");
  EXPECT_EQ(get("/api/dashboard").status, 200);
}

TEST_F(DashboardTest, MetricsGainDispatchLatencyAndPerFunctionCounters) {
  start();
  start_server("alpha", {"--capacity", "2"});
  ASSERT_TRUE(servers_become({"alpha"}));
  const std::string output = run_client_program(DASHBOARD_PROGRAM, "work", {"work", "5", "1", "2"});
  ASSERT_NE(output.find("DONE ok=5 failed=2"), std::string::npos) << output;
  const std::string metrics = get("/metrics").body;
  EXPECT_NE(metrics.find("# TYPE clupy_dispatch_latency_seconds histogram"), std::string::npos);
  EXPECT_NE(metrics.find("clupy_dispatch_latency_seconds_bucket{le=\"+Inf\"} 7\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("clupy_dispatch_latency_seconds_count 7\n"), std::string::npos);
  const auto has_line = [&](const std::string& start, const std::string& end) {
    std::istringstream in(metrics);
    for (std::string line; std::getline(in, line);)
      if (line.rfind(start, 0) == 0 && line.size() >= end.size() &&
          line.compare(line.size() - end.size(), end.size(), end) == 0 &&
          line.find("prints_and_") != std::string::npos)
        return true;
    return false;
  };
  EXPECT_TRUE(has_line("clupy_function_tasks_total{function=", "result=\"completed\"} 5"))
      << metrics;
  EXPECT_TRUE(has_line("clupy_function_tasks_total{function=", "result=\"failed\"} 2")) << metrics;
  EXPECT_TRUE(has_line("clupy_function_run_seconds_count{function=", "} 5")) << metrics;
}

}  // namespace
}  // namespace clupy::test
