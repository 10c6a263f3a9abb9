// Connecting to Redis: passwords, ACL users, database numbers and unreachable servers.
#include <gtest/gtest.h>

#include <clupy/store.hpp>

#include "redis_server.hpp"

namespace clupy {
namespace {

using namespace std::chrono_literals;

StoreOptions options_for(const std::string& url) {
  StoreOptions o;
  o.redis_url = url;
  o.retry_window = 200ms;
  return o;
}

TEST(StoreConnectionTest, PasswordAndAclUserAuthenticate) {
  test::RedisServer server(
      {"--requirepass", "s3cret", "--user", "alice", "on", ">alice-pw", "~*", "&*", "+@all"});
  std::string port = std::to_string(server.port());
  Store with_password(options_for("redis://:s3cret@127.0.0.1:" + port));
  with_password.write_csv("a.csv", {{"1"}});
  Store as_alice(options_for("redis://alice:alice-pw@127.0.0.1:" + port));
  EXPECT_TRUE(as_alice.exists("a.csv"));
}

TEST(StoreConnectionTest, WrongOrMissingPasswordIsAClearServerError) {
  test::RedisServer server({"--requirepass", "s3cret"});
  std::string port = std::to_string(server.port());
  for (const std::string& url : {"redis://:wrong@127.0.0.1:" + port, "redis://127.0.0.1:" + port}) {
    SCOPED_TRACE(url);
    Store store(options_for(url));
    try {
      store.exists("x");
      FAIL() << "no authentication error";
    } catch (const StoreError& e) {
      EXPECT_EQ(e.code(), StoreError::Code::kServer);
      std::string what = e.what();
      EXPECT_TRUE(what.find("WRONGPASS") != std::string::npos ||
                  what.find("NOAUTH") != std::string::npos)
          << what;
      EXPECT_EQ(what.find("wrong"), std::string::npos) << "the password leaked: " << what;
    }
  }
}

TEST(StoreConnectionTest, DatabaseNumberSeparatesStores) {
  test::RedisServer server;
  std::string base = "redis://127.0.0.1:" + std::to_string(server.port());
  Store db0(options_for(base + "/0"));
  Store db3(options_for(base + "/3"));
  db3.write_csv("only-in-3.csv", {{"x"}});
  EXPECT_TRUE(db3.exists("only-in-3.csv"));
  EXPECT_FALSE(db0.exists("only-in-3.csv"));
}

TEST(StoreConnectionTest, UnreachableServerNamesItselfAfterRetrying) {
  int port = test::free_loopback_port();  // nothing listens there
  Store store(options_for("redis://127.0.0.1:" + std::to_string(port)));
  try {
    store.ping();
    FAIL() << "ping without a server";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kConnection);
    std::string what = e.what();
    EXPECT_NE(what.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << what;
    EXPECT_NE(what.find("gave up after"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace clupy
