#include "master/registry.hpp"

#include <gtest/gtest.h>

namespace clupy::master {
namespace {

using std::chrono::milliseconds;

wire::ServerDescription server(const std::string& id, unsigned capacity = 2) {
  wire::ServerDescription d;
  d.set_server_id(id);
  d.set_hostname("host-" + id);
  d.set_capacity(capacity);
  return d;
}

TEST(RegistryTest, RegisterThenListWithTimes) {
  Registry registry;
  const auto t0 = Clock::now();
  EXPECT_TRUE(registry.register_server(server("a"), 1, t0));
  EXPECT_TRUE(registry.register_server(server("b", 8), 2, t0));
  wire::RegistryReply reply;
  registry.fill(reply, t0 + milliseconds(5));
  ASSERT_EQ(reply.servers_size(), 2);
  EXPECT_EQ(reply.servers(1).server().capacity(), 8u);
  EXPECT_TRUE(reply.servers(0).connected());
  EXPECT_GT(reply.servers(0).registered_at_ms(), 0);
  EXPECT_EQ(reply.servers(0).reserved_by(), "");
}

TEST(RegistryTest, HeartbeatKeepsAServerPastTheTtl) {
  Registry registry;
  const auto t0 = Clock::now();
  registry.register_server(server("a"), 1, t0);
  EXPECT_TRUE(registry.heartbeat("a", 1, t0 + milliseconds(900)));
  EXPECT_TRUE(registry.expire(t0 + milliseconds(1500), milliseconds(1000)).empty());
  auto removed = registry.expire(t0 + milliseconds(2000), milliseconds(1000));
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0], "a");
  EXPECT_EQ(registry.size(), 0u);
}

TEST(RegistryTest, HeartbeatFromAnUnknownServerAsksItToRegister) {
  Registry registry;
  EXPECT_FALSE(registry.heartbeat("ghost", 0, Clock::now()));
}

TEST(RegistryTest, LostConnectionKeepsTheServerUntilTheTtl) {
  Registry registry;
  const auto t0 = Clock::now();
  registry.register_server(server("a"), 7, t0);
  registry.connection_lost(7);
  ASSERT_NE(registry.find("a"), nullptr);
  wire::RegistryReply reply;
  registry.fill(reply, t0);
  EXPECT_FALSE(reply.servers(0).connected());
  EXPECT_EQ(registry.expire(t0 + milliseconds(1001), milliseconds(1000)).size(), 1u);
}

TEST(RegistryTest, ReRegistrationKeepsTheFirstRegistrationTime) {
  Registry registry;
  const auto t0 = Clock::now();
  registry.register_server(server("a"), 1, t0);
  EXPECT_FALSE(registry.register_server(server("a", 4), 2, t0 + milliseconds(500)));
  const ServerRecord* record = registry.find("a");
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(record->registered_at, t0);
  EXPECT_EQ(record->last_heartbeat, t0 + milliseconds(500));
  EXPECT_EQ(record->description.capacity(), 4u);
  EXPECT_EQ(record->connection_id, 2u);
}

TEST(RegistryTest, UnregisterRemovesAtOnce) {
  Registry registry;
  registry.register_server(server("a"), 1, Clock::now());
  EXPECT_TRUE(registry.unregister("a"));
  EXPECT_FALSE(registry.unregister("a"));
  EXPECT_EQ(registry.size(), 0u);
}

}  // namespace
}  // namespace clupy::master
