// Redis killed and restarted mid-operation: clear errors, then recovery with the same objects.
#include <gtest/gtest.h>

#include <clupy/store.hpp>

#include "redis_server.hpp"

namespace clupy {
namespace {

using namespace std::chrono_literals;

TEST(StoreRestartTest, KilledRedisGivesAClearErrorThenTheStoreRecovers) {
  test::RedisServer server;
  StoreOptions o = server.options("restart");
  o.retry_window = 300ms;
  o.chunk_size = 64 * 1024;
  Store store(o);
  store.write_csv("before.csv", {{"x"}});

  // A write in progress when Redis dies fails with a connection error, not a hang or a crash.
  StoreWriter w = store.open_write("during.bin");
  std::string block(64 * 1024, 'd');
  w << block;
  server.kill();
  try {
    for (int i = 0; i < 64; ++i) w << block;
    w.commit();
    FAIL() << "a write survived the death of its Redis";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kConnection) << e.what();
    EXPECT_NE(std::string(e.what()).find(std::to_string(server.port())), std::string::npos)
        << "the message names the server: " << e.what();
  }

  // Retryable calls retry for the window and then say what happened.
  try {
    store.exists("before.csv");
    FAIL() << "exists answered without a Redis";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kConnection);
    EXPECT_NE(std::string(e.what()).find("gave up after"), std::string::npos) << e.what();
  }

  server.start();  // same port, empty (no persistence)
  ASSERT_TRUE(test::wait_until(
      [&] {
        try {
          return !store.exists("before.csv");
        } catch (const StoreError&) {
          return false;
        }
      },
      30s, "the store to reconnect"));
  store.write_csv("after.csv", {{"y"}});
  std::vector<std::string> row;
  CsvReader csv = store.read_csv("after.csv");
  ASSERT_TRUE(csv.next(row));
  EXPECT_EQ(row[0], "y");
}

TEST(StoreRestartTest, ShortOutageIsBridgedByRetries) {
  test::RedisServer server;
  StoreOptions o = server.options("bridge");
  o.retry_window = 60s;  // generous: the restart below must fit in it on a loaded machine
  Store store(o);
  store.write_csv("k.csv", {{"v"}});
  server.kill();
  std::thread restarter([&] { server.start(); });
  // Starts failing against the dead server and succeeds once the new one answers, within one call.
  EXPECT_FALSE(store.exists("k.csv"));
  restarter.join();
}

}  // namespace
}  // namespace clupy
