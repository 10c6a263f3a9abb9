// Parsing of store URLs; in-process, no Redis.
#include <gtest/gtest.h>

#include "store/redis.hpp"

namespace clupy::store {
namespace {

TEST(RedisUrlTest, HostPortAndDb) {
  RedisEndpoint e = parse_redis_url("redis://10.0.0.5:6380/3");
  EXPECT_FALSE(e.unix_socket);
  EXPECT_EQ(e.host, "10.0.0.5");
  EXPECT_EQ(e.port, 6380);
  EXPECT_EQ(e.db, 3);
}

TEST(RedisUrlTest, DefaultsPortAndDb) {
  RedisEndpoint e = parse_redis_url("redis://cache");
  EXPECT_EQ(e.host, "cache");
  EXPECT_EQ(e.port, 6379);
  EXPECT_EQ(e.db, 0);
}

TEST(RedisUrlTest, UserAndPercentEncodedPassword) {
  RedisEndpoint e = parse_redis_url("redis://alice:p%40ss@h:1/0");
  EXPECT_EQ(e.user, "alice");
  EXPECT_EQ(e.password, "p@ss");
  EXPECT_EQ(parse_redis_url("redis://:secret@h").password, "secret");
  EXPECT_EQ(parse_redis_url("redis://:secret@h").user, "");
  EXPECT_EQ(e.describe().find("p@ss"), std::string::npos) << "password leaked into messages";
}

TEST(RedisUrlTest, Ipv6Host) {
  RedisEndpoint e = parse_redis_url("redis://[::1]:7000");
  EXPECT_EQ(e.host, "::1");
  EXPECT_EQ(e.port, 7000);
}

TEST(RedisUrlTest, UnixSocketWithQuery) {
  RedisEndpoint e = parse_redis_url("unix:///run/redis.sock?db=2&password=x");
  EXPECT_TRUE(e.unix_socket);
  EXPECT_EQ(e.path, "/run/redis.sock");
  EXPECT_EQ(e.db, 2);
  EXPECT_EQ(e.password, "x");
}

TEST(RedisUrlTest, BadUrlsSayWhatIsWrong) {
  for (const char* bad : {"http://x", "redis://h:99999", "redis://h:1/x", "unix://relative",
                          "unix:///s?color=red", "redis://:p%4"}) {
    SCOPED_TRACE(bad);
    try {
      parse_redis_url(bad);
      FAIL() << "accepted";
    } catch (const StoreError& e) {
      EXPECT_EQ(e.code(), StoreError::Code::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

TEST(RedisUrlTest, TlsIsRefusedWithAReason) {
  try {
    parse_redis_url("rediss://h:6380");
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("TLS"), std::string::npos);
  }
}

}  // namespace
}  // namespace clupy::store
