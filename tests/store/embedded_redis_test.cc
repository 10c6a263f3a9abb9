// The embedded redis-server of `store: embedded`.
#include "store/embedded_redis.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <clupy/store.hpp>

#include "support/process.hpp"

namespace clupy {
namespace {

TEST(EmbeddedRedisTest, StartsOnAUnixSocketAndServesTheStore) {
  test::TempDir dir;
  pid_t pid = -1;
  {
    store::EmbeddedRedis redis(dir.file("redis"));
    pid = redis.pid();
    ASSERT_GT(pid, 0);
    EXPECT_EQ(redis.url(), "unix://" + dir.file("redis") + "/redis.sock");
    StoreOptions o;
    o.redis_url = redis.url();
    Store store(o);
    store.write_csv("a.csv", {{"1", "2"}});
    EXPECT_EQ(store.stat("a.csv").content_type, kContentTypeCsv);
  }
  // The destructor stopped and reaped it: the PID is gone.
  EXPECT_NE(::kill(pid, 0), 0);
}

TEST(EmbeddedRedisTest, MissingBinaryIsAClearError) {
  test::TempDir dir;
  try {
    store::EmbeddedRedis redis(dir.path(), {.redis_server = "clupy-no-such-redis-server",
                                            .startup_timeout = std::chrono::seconds(5),
                                            .maxmemory_bytes = 0});
    FAIL() << "started a server that does not exist";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("clupy-no-such-redis-server"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("not installed"), std::string::npos);
  }
}

TEST(EmbeddedRedisTest, ServerThatExitsAtStartupIsReportedWithItsLog) {
  test::TempDir dir;
  // /bin/false exits at once: the error says so instead of waiting for the timeout.
  try {
    store::EmbeddedRedis redis(dir.path(), {.redis_server = "/bin/false",
                                            .startup_timeout = std::chrono::seconds(30),
                                            .maxmemory_bytes = 0});
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("exited at start-up"), std::string::npos) << e.what();
  }
}

TEST(EmbeddedRedisTest, TooLongSocketPathIsRejected) {
  EXPECT_THROW(store::EmbeddedRedis(std::string(200, 'd')), StoreError);
}

}  // namespace
}  // namespace clupy
