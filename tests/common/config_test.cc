#include "common/config.hpp"

#include <gtest/gtest.h>

#include "clupy/errors.hpp"
#include "support/process.hpp"

namespace clupy::common {
namespace {

// Runs `parse` and returns the ConfigError's message, or "" when nothing was thrown.
template <class F>
std::string error_of(F&& parse) {
  try {
    parse();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigTest, EmptyFileGivesDefaults) {
  MasterConfig c = parse_master_config("", "clupy.master.yaml");
  EXPECT_EQ(c.port, 7878);
  EXPECT_EQ(c.bind, "127.0.0.1");
  EXPECT_EQ(c.registration_ttl, Millis(10'000));
  ServerConfig s = parse_server_config("", "clupy.server.yaml");
  EXPECT_EQ(s.master_url, "clupy://localhost:7878");
}

TEST(ConfigTest, MasterKeysFromTheOriginalDesignParse) {
  MasterConfig c = parse_master_config(R"(
port: 9000
registration_ttl: 30
reservation_ttl: 2m
maintenance_period: 500ms
default_server_request_count: 4
max_frame_size: 16MiB
log_level: debug
tls:
  enabled: true
  cert_file: /etc/clupy/cert.pem
  key_file: /etc/clupy/key.pem
)",
                                       "m.yaml");
  EXPECT_EQ(c.port, 9000);
  EXPECT_EQ(c.registration_ttl, Millis(30'000));
  EXPECT_EQ(c.reservation_ttl, Millis(120'000));
  EXPECT_EQ(c.maintenance_period, Millis(500));
  EXPECT_EQ(c.default_server_request_count, 4);
  EXPECT_EQ(c.max_frame_size, 16u << 20);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_TRUE(c.tls.enabled);
  EXPECT_EQ(c.tls.key_file, "/etc/clupy/key.pem");
}

TEST(ConfigTest, ServerKeysParse) {
  ServerConfig c = parse_server_config(R"(
master_url: clupy://master.example:7878
port: 7879
registration_interval: 2s
failure_retry_interval: 250ms
capacity: 8
labels: {gpu: "yes", zone: a}
)",
                                       "s.yaml");
  EXPECT_EQ(c.master_url, "clupy://master.example:7878");
  EXPECT_EQ(c.port, 7879);
  EXPECT_EQ(c.registration_interval, Millis(2000));
  EXPECT_EQ(c.failure_retry_interval, Millis(250));
  EXPECT_EQ(c.capacity, 8);
  EXPECT_EQ(c.labels.at("gpu"), "yes");
  EXPECT_EQ(c.labels.at("zone"), "a");
}

TEST(ConfigTest, DependencyRecheckPeriodTakesADurationOrOff) {
  EXPECT_EQ(parse_server_config("", "s.yaml").dependency_recheck_period, Millis(600'000));
  EXPECT_EQ(
      parse_server_config("dependency_recheck_period: 30s\n", "s.yaml").dependency_recheck_period,
      Millis(30'000));
  EXPECT_EQ(
      parse_server_config("dependency_recheck_period: off\n", "s.yaml").dependency_recheck_period,
      Millis(0));
  const std::string message =
      error_of([] { parse_server_config("dependency_recheck_period: often\n", "s.yaml"); });
  EXPECT_NE(message.find("s.yaml:1"), std::string::npos) << message;
  EXPECT_NE(message.find("dependency_recheck_period"), std::string::npos) << message;
}

TEST(ConfigTest, UnknownKeyNamesFileLineAndKey) {
  const std::string message =
      error_of([] { parse_master_config("port: 7878\nprot: 9\n", "clupy.master.yaml"); });
  EXPECT_NE(message.find("clupy.master.yaml:2"), std::string::npos) << message;
  EXPECT_NE(message.find("'prot'"), std::string::npos) << message;
  EXPECT_NE(message.find("unknown key"), std::string::npos) << message;
  EXPECT_NE(message.find("registration_ttl"), std::string::npos) << "lists known keys: " << message;
}

TEST(ConfigTest, BadValueNamesFileLineAndKey) {
  const std::string message =
      error_of([] { parse_master_config("bind: 0.0.0.0\n\nport: seventy\n", "m.yaml"); });
  EXPECT_NE(message.find("m.yaml:3"), std::string::npos) << message;
  EXPECT_NE(message.find("'port'"), std::string::npos) << message;
  EXPECT_NE(message.find("seventy"), std::string::npos) << message;
}

TEST(ConfigTest, OutOfRangeAndBadTypesAreRejected) {
  EXPECT_NE(error_of([] { parse_master_config("port: 70000\n", "m"); }), "");
  EXPECT_NE(error_of([] { parse_master_config("registration_ttl: soon\n", "m"); }), "");
  EXPECT_NE(error_of([] { parse_master_config("registration_ttl: 0\n", "m"); }), "");
  EXPECT_NE(error_of([] { parse_master_config("max_frame_size: 12XB\n", "m"); }), "");
  EXPECT_NE(error_of([] { parse_master_config("log_level: loud\n", "m"); }), "");
  EXPECT_NE(error_of([] { parse_master_config("port: [1, 2]\n", "m"); }), "");
  EXPECT_NE(error_of([] { parse_server_config("master_url: http://x:1\n", "s"); }), "");
  EXPECT_NE(error_of([] { parse_server_config("labels: [a, b]\n", "s"); }), "");
  EXPECT_NE(error_of([] { parse_master_config("- just\n- a list\n", "m"); }), "");
}

TEST(ConfigTest, NestedKeyErrorsNameTheSection) {
  const std::string message =
      error_of([] { parse_master_config("tls:\n  enabled: true\n  cert: x\n", "m.yaml"); });
  EXPECT_NE(message.find("m.yaml:3"), std::string::npos) << message;
  EXPECT_NE(message.find("'tls.cert'"), std::string::npos) << message;
}

TEST(ConfigTest, MalformedYamlNamesTheLine) {
  const std::string message =
      error_of([] { parse_master_config("port: 1\n  bad: [\n", "m.yaml"); });
  EXPECT_NE(message.find("m.yaml:"), std::string::npos) << message;
}

TEST(ConfigTest, NoAuthBeyondLoopbackIsRefused) {
  MasterConfig c;
  c.allow_no_auth = true;
  c.bind = "127.0.0.1";
  EXPECT_NO_THROW(validate(c));
  c.bind = "0.0.0.0";
  const std::string message = error_of([&] { validate(c); });
  EXPECT_NE(message.find("without authentication"), std::string::npos) << message;
}

TEST(ConfigTest, HostilePeerLimitsParseAndAreChecked) {
  MasterConfig defaults = parse_master_config("", "m.yaml");
  EXPECT_EQ(defaults.max_pending_connections, 64);
  EXPECT_EQ(defaults.idle_timeout, Millis(300'000));
  EXPECT_EQ(defaults.http_auth, HttpAuth::kLoopback);
  MasterConfig c = parse_master_config(
      "max_pending_connections: 8\nidle_timeout: off\nhttp_auth: token\n", "m.yaml");
  EXPECT_EQ(c.max_pending_connections, 8);
  EXPECT_EQ(c.idle_timeout, Millis(0));
  EXPECT_EQ(c.http_auth, HttpAuth::kToken);
  EXPECT_NO_THROW(validate(c));
  EXPECT_EQ(parse_master_config("http_auth: off\n", "m.yaml").http_auth, HttpAuth::kOff);
  EXPECT_THROW(parse_master_config("http_auth: maybe\n", "m.yaml"), ConfigError);
  // Shorter than clients' keep-alive period would close healthy connections.
  MasterConfig hasty = parse_master_config("idle_timeout: 20s\nreservation_ttl: 2m\n", "m.yaml");
  EXPECT_THROW(validate(hasty), ConfigError);
}

TEST(ConfigTest, TlsNeedsItsFiles) {
  MasterConfig m;
  m.tls.enabled = true;
  EXPECT_NE(error_of([&] { validate(m); }), "");
  ServerConfig s;
  s.tls.enabled = true;
  EXPECT_NE(error_of([&] { validate(s); }), "");
}

TEST(ConfigTest, DurationsAndSizes) {
  EXPECT_EQ(parse_duration("1.5s"), Millis(1500));
  EXPECT_EQ(parse_duration("3"), Millis(3000));
  EXPECT_EQ(parse_duration("1h"), Millis(3'600'000));
  EXPECT_THROW(parse_duration("-1s"), ConfigError);
  EXPECT_THROW(parse_duration("2 days"), ConfigError);
  EXPECT_EQ(parse_size("64KiB"), 64u << 10);
  EXPECT_EQ(parse_size("2MB"), 2'000'000u);
  EXPECT_THROW(parse_size("lots"), ConfigError);
}

TEST(ConfigTest, LoaderReadsTheNamedFileAndReportsAMissingOne) {
  test::TempDir dir;
  const std::string path = dir.file("clupy.server.yaml");
  test::write_file(path, "capacity: 3\n");
  EXPECT_EQ(load_server_config(path).capacity, 3);
  const std::string message = error_of([&] { load_server_config(dir.file("nope.yaml")); });
  EXPECT_NE(message.find("nope.yaml"), std::string::npos) << message;
}

}  // namespace
}  // namespace clupy::common
