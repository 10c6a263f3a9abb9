// A server's /metrics (http_port): real master, real server, the task program's workers. The
// text is checked against the Prometheus text format as it is read, and the values against
// what the tasks did.
#include <signal.h>

#include <filesystem>
#include <map>
#include <regex>
#include <sstream>

#include "cluster_fixture.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

// One scrape: sample name with its labels ("name{a=\"b\"}") -> value. Fails the test when a line
// is not of the Prometheus text format (0.0.4) or a sample has no TYPE declared before it.
struct Scrape {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;  // family -> counter, gauge, ...
  double value(const std::string& key) const {
    auto it = samples.find(key);
    return it == samples.end() ? -1 : it->second;
  }
  // The sum over every sample of a family whose labels contain `label` ("" = all of them).
  double sum(const std::string& family, const std::string& label = "") const {
    double total = 0;
    for (const auto& [key, v] : samples)
      if (key.rfind(family + "{", 0) == 0 && key.find(label) != std::string::npos) total += v;
    return total;
  }
};

testing::AssertionResult parse_prometheus(const std::string& text, Scrape& out) {
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*)");
  static const std::regex kType(
      R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (\S+))");
  std::istringstream in(text);
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    std::smatch m;
    if (std::regex_match(line, m, kHelp)) continue;
    if (std::regex_match(line, m, kType)) {
      if (out.types.count(m[1])) return testing::AssertionFailure() << "TYPE twice: " << line;
      out.types[m[1]] = m[2];
      continue;
    }
    if (!std::regex_match(line, m, kSample))
      return testing::AssertionFailure() << "line " << number << " is not a sample: " << line;
    if (!out.types.count(m[1]))
      return testing::AssertionFailure() << "sample before its TYPE: " << line;
    const std::string number_text = m[m.size() - 1];
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(number_text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != number_text.size()) return testing::AssertionFailure() << "not a number: " << line;
    if (out.types[m[1]] == "counter" && v < 0)
      return testing::AssertionFailure() << "negative counter: " << line;
    out.samples[line.substr(0, line.rfind(' '))] = v;
  }
  return testing::AssertionSuccess();
}

class ServerMetricsTest : public ClusterFixture {
 protected:
  // GET `path` from 127.0.0.1:port; the status line and the body.
  static std::pair<std::string, std::string> http_get(int port, const std::string& path) {
    const std::string answer = tcp_exchange(
        port, "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n", std::chrono::seconds(5));
    const auto end_of_status = answer.find("\r\n");
    const auto end_of_head = answer.find("\r\n\r\n");
    if (end_of_status == std::string::npos || end_of_head == std::string::npos) return {};
    return {answer.substr(0, end_of_status), answer.substr(end_of_head + 4)};
  }
  Scrape scrape(int port) {
    auto [status, body] = http_get(port, "/metrics");
    Scrape out;
    EXPECT_EQ(status, "HTTP/1.1 200 OK") << body;
    EXPECT_TRUE(parse_prometheus(body, out)) << body;
    return out;
  }
  ChildProcess start_program(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), TASK_PROGRAM);
    return ChildProcess({args,
                         {{"CLUPY_MASTER_URL", master_url()}, {"CLUPY_TOKEN_FILE", token_file()}},
                         dir_.path(),
                         dir_.file(name + ".out")});
  }
};

TEST_F(ServerMetricsTest, CountersMoveAsTasksRunAndCountACrash) {
  start_master({"--registration-ttl", "3s"});
  const int http = free_loopback_port();
  start_server("s1", {"--capacity", "2", "--http-port", std::to_string(http)});
  ASSERT_TRUE(servers_become({"s1"}));

  Scrape before = scrape(http);
  EXPECT_EQ(before.types["clupy_server_workers_started_total"], "counter");
  EXPECT_EQ(before.types["clupy_server_busy_slots"], "gauge");
  EXPECT_EQ(before.value("clupy_server_slots"), 2);
  EXPECT_EQ(before.value("clupy_server_busy_slots"), 0);
  EXPECT_EQ(before.value("clupy_server_workers_started_total"), 0);
  EXPECT_EQ(before.value("clupy_server_image_cache_misses_total"), 0);
  EXPECT_EQ(before.value("clupy_server_registered"), 1);
  EXPECT_GT(before.value("clupy_server_sent_bytes_total"), 0);  // registration, heartbeats
  EXPECT_EQ(http_get(http, "/healthz").second, "ok\n");
  EXPECT_EQ(http_get(http, "/nothing").first, "HTTP/1.1 404 Not Found");

  // 20 tasks of 300 ms on two slots: both slots are seen busy while they run.
  ChildProcess program = start_program("long", {"long", "20", "300"});
  double busy_seen = 0;
  EXPECT_TRUE(wait_until(
      [&] {
        busy_seen = std::max(busy_seen, scrape(http).value("clupy_server_busy_slots"));
        return busy_seen == 2;
      },
      seconds(60), "both slots busy in /metrics"));
  ASSERT_TRUE(program.wait(seconds(120))) << program.log();
  EXPECT_NE(program.log().find("DONE ok=20 failed=0"), std::string::npos) << program.log();

  Scrape after = scrape(http);
  EXPECT_EQ(after.sum("clupy_server_tasks_run_total", "program=\"task_program\""), 20)
      << read_file(dir_.file("s1.log"));
  EXPECT_EQ(after.value("clupy_server_image_cache_misses_total"), 1);
  EXPECT_EQ(after.value("clupy_server_image_cache_hits_total"), 0);
  const auto image_bytes = std::filesystem::file_size(TASK_PROGRAM);
  EXPECT_EQ(after.value("clupy_server_image_bytes_fetched_total"), image_bytes);
  EXPECT_GT(after.value("clupy_server_received_bytes_total"), image_bytes);
  EXPECT_GT(after.value("clupy_server_sent_bytes_total"),
            before.value("clupy_server_sent_bytes_total"));
  EXPECT_GE(after.value("clupy_server_workers_started_total"), 2);
  EXPECT_EQ(after.value("clupy_server_workers_crashed_total"), 0);
  EXPECT_TRUE(wait_until([&] { return scrape(http).value("clupy_server_busy_slots") == 0; },
                         seconds(10), "the slots to be idle again"));

  // 50 quick tasks, every 25th crashing its worker (SIGSEGV): two crashes, counted, and the
  // workers replaced.
  ChildProcess crashes = start_program("crashmix", {"crashmix", "50", "25"});
  ASSERT_TRUE(crashes.wait(seconds(120))) << crashes.log();
  EXPECT_NE(crashes.log().find("CRASHMIX ok=48 crashed=2 wrong=0"), std::string::npos)
      << crashes.log();
  Scrape crashed = scrape(http);
  EXPECT_EQ(crashed.value("clupy_server_workers_crashed_total"), 2);
  EXPECT_EQ(crashed.sum("clupy_server_tasks_crashed_total"), 2);
  EXPECT_EQ(crashed.sum("clupy_server_tasks_run_total"), 20 + 48);
  EXPECT_LE(crashed.value("clupy_server_workers_restarted_total"), 2);
  // The crashed workers are replaced when work needs them (perhaps already): four tasks of
  // 200 ms need both slots.
  ChildProcess more = start_program("more", {"long", "4", "200"});
  ASSERT_TRUE(more.wait(seconds(120))) << more.log();
  Scrape replaced = scrape(http);
  EXPECT_GE(replaced.value("clupy_server_workers_restarted_total"), 1);
  EXPECT_LE(replaced.value("clupy_server_workers_restarted_total"), 2);
  EXPECT_EQ(replaced.value("clupy_server_workers_crashed_total"), 2);
  EXPECT_TRUE(servers_["s1"].running());
}

TEST_F(ServerMetricsTest, AnImageInTheCacheDirectoryIsAHit) {
  start_master({"--registration-ttl", "3s"});
  const int http = free_loopback_port();
  start_server("s1", {"--capacity", "1"});  // no --http-port: no HTTP side
  ASSERT_TRUE(servers_become({"s1"}));
  ChildProcess first = start_program("first", {"long", "2", "10"});
  ASSERT_TRUE(first.wait(seconds(120))) << first.log();
  EXPECT_EQ(http_get(http, "/metrics").first, "");  // nothing listens there
  servers_["s1"].signal(SIGTERM);
  ASSERT_TRUE(servers_["s1"].wait(seconds(30)));

  // The same cache directory (the working directory's default), a new server process.
  start_server("s2", {"--capacity", "1", "--http-port", std::to_string(http)});
  ASSERT_TRUE(servers_become({"s2"}));
  ChildProcess second = start_program("second", {"long", "2", "10"});
  ASSERT_TRUE(second.wait(seconds(120))) << second.log();
  Scrape after = scrape(http);
  EXPECT_EQ(after.value("clupy_server_image_cache_hits_total"), 1);
  EXPECT_EQ(after.value("clupy_server_image_cache_misses_total"), 0);
  EXPECT_EQ(after.value("clupy_server_image_bytes_fetched_total"), 0);
  EXPECT_EQ(after.sum("clupy_server_tasks_run_total"), 2);
}

TEST_F(ServerMetricsTest, MetricsNeedTheTokenWhenHttpAuthIsToken) {
  start_master();
  const int http = free_loopback_port();
  const std::string config = dir_.file("server.yaml");
  write_file(config, "http_port: " + std::to_string(http) + "\nhttp_auth: token\n");
  start_server("s1", {"--config", config});
  ASSERT_TRUE(servers_become({"s1"}));
  EXPECT_EQ(http_get(http, "/metrics").first, "HTTP/1.1 401 Unauthorized");
  EXPECT_EQ(http_get(http, "/healthz").second, "ok\n");
  std::string token = read_file(token_file());
  while (!token.empty() && (token.back() == '\n' || token.back() == ' ')) token.pop_back();
  const std::string answer = tcp_exchange(
      http,
      "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + token + "\r\n\r\n",
      std::chrono::seconds(5));
  EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK", 0), 0u) << answer;
  EXPECT_NE(answer.find("clupy_server_slots"), std::string::npos);
}

}  // namespace
}  // namespace clupy::test
