// The service file: every key parsed, defaults, and mistakes reported with file, line and key.
#include "service/spec.hpp"

#include <gtest/gtest.h>

#include "clupy/errors.hpp"

namespace {

using clupy::services::AuthMode;
using clupy::services::parse_service_spec;

std::string error_of(const std::string& yaml) {
  try {
    parse_service_spec(yaml, "svc.yaml", "/srv");
  } catch (const clupy::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ServiceSpec, EveryKeyParses) {
  auto spec = parse_service_spec(R"(name: wordcount
binary: ./build/wordcount
entry_points: [count, top_words]
port: 8080
bind: 127.0.0.1
replicas: 2
packages: [libfoo1, zlib1g]
max_body: 64KiB
timeout: 2s
auth: {key_file: keys/wordcount.key}
)",
                                 "svc.yaml", "/srv");
  EXPECT_EQ(spec.name, "wordcount");
  EXPECT_EQ(spec.binary, "/srv/build/wordcount");
  EXPECT_EQ(spec.entry_points, (std::vector<std::string>{"count", "top_words"}));
  EXPECT_EQ(spec.port, 8080);
  EXPECT_EQ(spec.bind, "127.0.0.1");
  EXPECT_EQ(spec.replicas, 2);
  EXPECT_EQ(spec.packages, (std::vector<std::string>{"libfoo1", "zlib1g"}));
  EXPECT_EQ(spec.max_body, 64u * 1024);
  EXPECT_EQ(spec.timeout, std::chrono::seconds(2));
  EXPECT_EQ(spec.auth, AuthMode::kKey);
  EXPECT_EQ(spec.key_file, "/srv/keys/wordcount.key");
}

TEST(ServiceSpec, DefaultsAndAuthWords) {
  auto spec = parse_service_spec("name: a\nbinary: /bin/x\nentry_points: [f]\nauth: public\n",
                                 "svc.yaml", "/srv");
  EXPECT_EQ(spec.port, 0);
  EXPECT_EQ(spec.replicas, 1);
  EXPECT_EQ(spec.max_body, 1u << 20);
  EXPECT_EQ(spec.timeout, std::chrono::seconds(5));
  EXPECT_EQ(spec.auth, AuthMode::kPublic);
  EXPECT_EQ(parse_service_spec("name: a\nbinary: x\nentry_points: [f]\n", "s", "").auth,
            AuthMode::kToken);
}

TEST(ServiceSpec, MistakesNameFileLineAndKey) {
  EXPECT_EQ(error_of("name: a\nbinary: x\nentry_points: [f]\nreplica: 2\n"),
            "svc.yaml:4: key 'replica': unknown key (known keys: name, binary, entry_points, port, "
            "bind, replicas, packages, max_body, timeout, auth)");
  EXPECT_EQ(error_of("name: a\nbinary: x\nentry_points: [f]\nport: 70000\n"),
            "svc.yaml:4: key 'port': expected an integer from 0 to 65535, got '70000'");
  EXPECT_EQ(error_of("name: A b\nbinary: x\nentry_points: [f]\n"),
            "svc.yaml:1: key 'name': expected 1 to 63 of a-z, 0-9, '_' and '-', got 'A b'");
  EXPECT_EQ(error_of("name: a\nbinary: x\nentry_points: [f, f]\n"),
            "svc.yaml:3: key 'entry_points': 'f' is listed twice");
  EXPECT_EQ(error_of("name: a\nbinary: x\nentry_points: [status]\n"),
            "svc.yaml:3: key 'entry_points': 'status' is a path the front answers itself (GET "
            "/status); export the function under another name");
  EXPECT_EQ(error_of("name: a\nbinary: x\nentry_points: [f]\nauth: secret\n"),
            "svc.yaml:4: key 'auth': expected token, public, or {key_file: PATH}, got 'secret'");
  EXPECT_EQ(error_of("name: a\nbinary: x\nentry_points: [f]\ntimeout: soon\n"),
            "svc.yaml:4: key 'timeout': expected a duration such as 500ms, 2s or 1m, got 'soon'");
  EXPECT_EQ(error_of("name: a\nentry_points: [f]\n"),
            "svc.yaml: key 'binary' is required (docs/services.md)");
  EXPECT_EQ(error_of("name: a\nbinary: x\nentry_points: [f\n"),
            "svc.yaml:4: end of sequence flow not found");
  EXPECT_EQ(error_of("name: a\nbinary: x\nentry_points: [f]\npackages: [\"a b\"]\n"),
            "svc.yaml:4: key 'packages': 'a b' is not a package name");
}

}  // namespace
