// The store: section of clupy.master.yaml.
#include "common/store_config.hpp"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "clupy/errors.hpp"

namespace clupy::common {
namespace {

using namespace std::chrono_literals;

// The `store` value of a YAML document, parsed as the master's loader parses it.
StoreSection parse(const std::string& yaml) {
  StoreSection section;
  parse_store_section(YAML::Load(yaml)["store"], "clupy.master.yaml", section);
  return section;
}

std::string error_of(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(StoreConfigTest, AbsentSectionMeansNoStoreAndDocumentedDefaults) {
  const StoreSection section;
  EXPECT_FALSE(section.enabled);
  EXPECT_EQ(section.redis, "redis://127.0.0.1:6379/0");
  EXPECT_EQ(section.key_prefix, "clupy:");
  EXPECT_EQ(section.chunk_size, 1u << 20);
  EXPECT_EQ(section.memory_budget, 0u);
  EXPECT_EQ(section.idle_ttl, std::chrono::hours(24 * 7));
  EXPECT_EQ(section.orphan_grace, 15min);
  EXPECT_EQ(section.sweep_interval, 1min);
}

TEST(StoreConfigTest, EmbeddedScalarEnablesAnEmbeddedStore) {
  const StoreSection section = parse("store: embedded\n");
  EXPECT_TRUE(section.enabled);
  EXPECT_TRUE(section.embedded);
  EXPECT_EQ(section.key_prefix, "clupy:");
}

TEST(StoreConfigTest, OffScalarLeavesTheStoreDisabled) {
  EXPECT_FALSE(parse("store: off\n").enabled);
}

TEST(StoreConfigTest, EveryKeyIsReadWithItsUnits) {
  const StoreSection section = parse(
      "store:\n"
      "  redis: redis://user:pw@10.0.0.5:6380/2\n"
      "  key_prefix: \"team-a:\"\n"
      "  chunk_size: 256KiB\n"
      "  memory_budget: 8GiB\n"
      "  idle_ttl: 2d\n"
      "  orphan_grace: 90s\n"
      "  sweep_interval: 250ms\n");
  EXPECT_TRUE(section.enabled);
  EXPECT_FALSE(section.embedded);
  EXPECT_EQ(section.redis, "redis://user:pw@10.0.0.5:6380/2");
  EXPECT_EQ(section.key_prefix, "team-a:");
  EXPECT_EQ(section.chunk_size, 256u << 10);
  EXPECT_EQ(section.memory_budget, 8ull << 30);
  EXPECT_EQ(section.idle_ttl, std::chrono::hours(48));
  EXPECT_EQ(section.orphan_grace, 90s);
  EXPECT_EQ(section.sweep_interval, 250ms);
}

TEST(StoreConfigTest, EmptyMappingEnablesTheDefaults) {
  const StoreSection section = parse("store: {}\n");
  EXPECT_TRUE(section.enabled);
  EXPECT_FALSE(section.embedded);
  EXPECT_EQ(section.redis, "redis://127.0.0.1:6379/0");
}

TEST(StoreConfigTest, RedisEmbeddedInTheMappingKeepsTheOtherKeys) {
  const StoreSection section = parse("store:\n  redis: embedded\n  idle_ttl: 0\n");
  EXPECT_TRUE(section.embedded);
  EXPECT_EQ(section.idle_ttl, 0ms);
}

TEST(StoreConfigTest, UnixSocketUrlIsAccepted) {
  EXPECT_EQ(parse("store: {redis: \"unix:///run/redis.sock?db=3\"}").redis,
            "unix:///run/redis.sock?db=3");
}

TEST(StoreConfigTest, UnknownKeyNamesFileLineKeyAndTheKnownKeys) {
  const std::string what = error_of("port: 1\nstore:\n  redis: redis://h:1/0\n  ttl: 3d\n");
  EXPECT_NE(what.find("clupy.master.yaml:4: key 'store.ttl': unknown key"), std::string::npos)
      << what;
  EXPECT_NE(what.find("idle_ttl"), std::string::npos) << what;
}

TEST(StoreConfigTest, BadValuesNameTheirKeyAndLine) {
  EXPECT_NE(
      error_of("store:\n  redis: rediss://h:6379\n").find("clupy.master.yaml:2: key 'store.redis'"),
      std::string::npos);
  EXPECT_NE(error_of("store:\n  redis: http://h\n").find("key 'store.redis'"), std::string::npos);
  EXPECT_NE(
      error_of("store:\n  chunk_size: 1KiB\n").find("key 'store.chunk_size': must be between"),
      std::string::npos);
  EXPECT_NE(error_of("store:\n  idle_ttl: soon\n").find("key 'store.idle_ttl'"), std::string::npos);
  EXPECT_NE(error_of("store:\n  orphan_grace: 0\n")
                .find("key 'store.orphan_grace': must be a positive duration"),
            std::string::npos)
      << error_of("store:\n  orphan_grace: 0\n");
  EXPECT_NE(error_of("store:\n  memory_budget: lots\n").find("key 'store.memory_budget'"),
            std::string::npos);
  EXPECT_NE(
      error_of("store:\n  key_prefix: \"\"\n").find("key 'store.key_prefix': must not be empty"),
      std::string::npos);
  EXPECT_NE(
      error_of("store:\n  redis: [a, b]\n").find("key 'store.redis': expected a single value"),
      std::string::npos);
}

TEST(StoreConfigTest, WrongShapeOfTheSectionSaysWhatIsExpected) {
  EXPECT_NE(error_of("store: yes please\n")
                .find("clupy.master.yaml:1: key 'store': expected 'embedded', 'off' or a mapping"),
            std::string::npos)
      << error_of("store: yes please\n");
  EXPECT_NE(error_of("store:\n").find("key 'store': expected"), std::string::npos)
      << error_of("store:\n");
  EXPECT_NE(error_of("store: [1, 2]\n").find("key 'store': expected"), std::string::npos);
}

TEST(StoreConfigTest, AFailedParseLeavesTheSectionUnchanged) {
  StoreSection section;
  EXPECT_THROW(parse_store_section(YAML::Load("store: {key_prefix: x, chunk_size: 1}")["store"],
                                   "f.yaml", section),
               ConfigError);
  EXPECT_EQ(section, StoreSection{});
}

}  // namespace
}  // namespace clupy::common
