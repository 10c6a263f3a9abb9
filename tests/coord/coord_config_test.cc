// The coordination: section of the configuration files (src/common/coord_config).
#include "common/coord_config.hpp"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "clupy/errors.hpp"

namespace clupy::common {
namespace {

using namespace std::chrono_literals;

// Parses `yaml` (a whole file) and applies its coordination key, as config.cc's key table does.
CoordinationSection parse(const std::string& yaml) {
  CoordinationSection out;
  YAML::Node root = YAML::Load(yaml);
  parse_coordination_section(root["coordination"], "clupy.master.yaml", out);
  return out;
}

std::string error_of(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(CoordinationSectionTest, EmptyMappingEnablesWithDefaults) {
  auto s = parse("port: 1\ncoordination: {}\n");
  EXPECT_TRUE(s.enabled);
  CoordinationSection defaults;
  defaults.enabled = true;
  EXPECT_EQ(s, defaults);
  EXPECT_EQ(s.connect, "127.0.0.1:2181/clupy");
  EXPECT_EQ(s.session_timeout, 10s);
  EXPECT_EQ(s.election_path, "/clupy/master");
}

TEST(CoordinationSectionTest, ReadsEveryKey) {
  auto s = parse(
      "coordination:\n"
      "  connect: zk1,zk2:2182,[::1]:2183/prod/clupy\n"
      "  session_timeout: 4s\n"
      "  connect_timeout: 500ms\n"
      "  digest_auth: clupy:s3:cret\n"
      "  election_path: /ha/master\n"
      "  advertise: master-a.example.net\n");
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.connect, "zk1:2181,zk2:2182,[::1]:2183/prod/clupy");
  EXPECT_EQ(s.session_timeout, 4s);
  EXPECT_EQ(s.connect_timeout, 500ms);
  EXPECT_EQ(s.digest_auth, "clupy:s3:cret");
  EXPECT_EQ(s.election_path, "/ha/master");
  EXPECT_EQ(s.advertise, "master-a.example.net");
}

TEST(CoordinationSectionTest, OffDisables) { EXPECT_FALSE(parse("coordination: off\n").enabled); }

TEST(CoordinationSectionTest, UnknownKeyNamesFileLineAndKnownKeys) {
  const std::string e = error_of("port: 1\ncoordination:\n  conect: zk1:2181\n");
  EXPECT_EQ(e.rfind("clupy.master.yaml:3: key 'coordination.conect': unknown key", 0), 0u) << e;
  EXPECT_NE(e.find("connect"), std::string::npos) << e;
}

TEST(CoordinationSectionTest, BadValuesNameTheKeyAndLine) {
  struct Case {
    const char* yaml;
    const char* prefix;
  };
  const Case cases[] = {
      {"coordination:\n  connect: zk1:x\n", "clupy.master.yaml:2: key 'coordination.connect': "},
      {"coordination:\n  connect: /chroot\n", "clupy.master.yaml:2: key 'coordination.connect': "},
      {"coordination:\n  connect: zk1/a/\n", "clupy.master.yaml:2: key 'coordination.connect': "},
      {"coordination:\n  session_timeout: 10 s\n",
       "clupy.master.yaml:2: key 'coordination.session_timeout': "},
      {"coordination:\n  session_timeout: 200ms\n",
       "clupy.master.yaml:2: key 'coordination.session_timeout': must be between"},
      {"coordination:\n  connect_timeout: 0s\n",
       "clupy.master.yaml:2: key 'coordination.connect_timeout': must be a positive"},
      {"coordination:\n  digest_auth: nobody\n",
       "clupy.master.yaml:2: key 'coordination.digest_auth': expected user:password"},
      {"coordination:\n  election_path: clupy/master\n",
       "clupy.master.yaml:2: key 'coordination.election_path': "},
      {"coordination:\n  election_path: /\n",
       "clupy.master.yaml:2: key 'coordination.election_path': "},
      {"coordination:\n  advertise: host:7878\n",
       "clupy.master.yaml:2: key 'coordination.advertise': "},
      {"coordination:\n  connect: [a, b]\n",
       "clupy.master.yaml:2: key 'coordination.connect': expected a single value"},
      {"coordination: zk1:2181\n", "clupy.master.yaml:1: key 'coordination': expected a mapping"},
  };
  for (const auto& c : cases) {
    const std::string e = error_of(c.yaml);
    EXPECT_EQ(e.rfind(c.prefix, 0), 0u) << c.yaml << " gave: " << e;
  }
}

TEST(CoordinationSectionTest, AFailedParseLeavesTheSectionUnchanged) {
  CoordinationSection out;
  out.connect = "before:1";
  YAML::Node root = YAML::Load("coordination:\n  connect: zk9:2181\n  session_timeout: x\n");
  EXPECT_THROW(parse_coordination_section(root["coordination"], "f.yaml", out), ConfigError);
  EXPECT_EQ(out.connect, "before:1");
  EXPECT_FALSE(out.enabled);
}

TEST(ZkConnectTest, NormalizesPortsAndChroot) {
  EXPECT_EQ(normalize_zk_connect("a"), "a:2181");
  EXPECT_EQ(normalize_zk_connect("a:1,b/"), "a:1,b:2181");
  EXPECT_EQ(normalize_zk_connect("[::1]/x/y"), "[::1]:2181/x/y");
  EXPECT_THROW(normalize_zk_connect(""), ConfigError);
  EXPECT_THROW(normalize_zk_connect("a,"), ConfigError);
  EXPECT_THROW(normalize_zk_connect("a:"), ConfigError);
  EXPECT_THROW(normalize_zk_connect("a/../b"), ConfigError);
}

}  // namespace
}  // namespace clupy::common
