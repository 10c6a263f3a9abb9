// The master's store service: the embedded redis-server, the background janitor and the
// cleanup of ended jobs, against real redis-server processes.
#include "master/store_service.hpp"

#include <gtest/gtest.h>

#include "redis_server.hpp"

namespace clupy::master {
namespace {

using namespace std::chrono_literals;
using test::wait_until;

common::StoreSection section_for(const test::RedisServer& redis, const std::string& prefix) {
  common::StoreSection section;
  section.enabled = true;
  section.redis = redis.url();
  section.key_prefix = "svc:" + prefix + ":";
  return section;
}

StoreOptions options_of(const common::StoreSection& section) {
  StoreOptions options;
  options.redis_url = section.redis;
  options.key_prefix = section.key_prefix;
  return options;
}

TEST(StoreServiceTest, EmbeddedServerIsWhatClientsAreToldAndStopsWithTheService) {
  test::TempDir dir;
  common::StoreSection section;
  section.enabled = true;
  section.embedded = true;
  section.chunk_size = 4096;
  std::string url;
  {
    StoreService service(section, dir.path());
    url = service.redis_url();
    EXPECT_EQ(url, "unix://" + dir.path() + "/store/redis.sock");
    EXPECT_EQ(service.client_options().chunk_size, 4096u);
    Store store(service.client_options());
    store.write_csv("a.csv", {{"x", "y"}, {"1", "2"}});
    EXPECT_EQ(store.stat("a.csv").size, 10u);
  }
  StoreOptions after;
  after.redis_url = url;
  after.retry_window = 0ms;
  EXPECT_THROW(Store(after).ping(), StoreError);
}

TEST(StoreServiceTest, SweepsRemoveIdleFilesButNotPinnedOnesAndAreCounted) {
  test::RedisServer redis;
  common::StoreSection section = section_for(redis, test::test_name());
  section.idle_ttl = 1ms;
  section.sweep_interval = 20ms;
  Store store(options_of(section));
  store.write_csv("old.csv", {{"a"}});
  store.write_csv("kept.csv", {{"b"}});
  store.pin("kept.csv");

  StoreService service(section, "unused");
  ASSERT_TRUE(wait_until(
      [&] {
        service.maintain(std::chrono::steady_clock::now());
        return !store.exists("old.csv");
      },
      30s, "the janitor to remove the idle file"));
  EXPECT_TRUE(store.exists("kept.csv"));
  ASSERT_TRUE(wait_until([&] { return service.counters().sweeps >= 1; }, 30s, "a sweep to finish"));
  const StoreCounters counters = service.counters();
  EXPECT_EQ(counters.files_removed.at("idle_ttl"), 1u);
  EXPECT_EQ(counters.bytes_removed.at("idle_ttl"), 3u);
  EXPECT_EQ(counters.sweep_failures, 0u);
  EXPECT_TRUE(counters.redis_reachable);
}

TEST(StoreServiceTest, EndedJobLosesOnlyItsOwnTemporaryFiles) {
  test::RedisServer redis;
  const common::StoreSection section = section_for(redis, test::test_name());
  Store store(options_of(section));
  for (const char* name : {"tmp/7/a", "tmp/7/sub/b", "tmp/70/c", "tmp/8/d", "data/e"})
    store.write_csv(name, {{name}});

  StoreService service(section, "unused");
  service.job_ended("7");
  ASSERT_TRUE(wait_until([&] { return service.counters().job_cleanups == 1; }, 30s,
                         "the cleanup of job 7"));
  EXPECT_FALSE(store.exists("tmp/7/a"));
  EXPECT_FALSE(store.exists("tmp/7/sub/b"));
  for (const char* name : {"tmp/70/c", "tmp/8/d", "data/e"})
    EXPECT_TRUE(store.exists(name)) << name;
  EXPECT_EQ(service.counters().files_removed.at("job_ended"), 2u);
}

TEST(StoreServiceTest, UnreachableRedisIsCountedThenCleanupsAreRetriedOnceItIsBack) {
  auto redis = std::make_unique<test::RedisServer>();
  common::StoreSection section = section_for(*redis, test::test_name());
  section.sweep_interval = 20ms;
  redis->kill();

  StoreService service(section, "unused");
  service.job_ended("3");
  service.maintain(std::chrono::steady_clock::now());
  ASSERT_TRUE(wait_until(
      [&] {
        const StoreCounters c = service.counters();
        return c.job_cleanup_failures >= 1 && c.sweep_failures >= 1;
      },
      60s, "the failures to be counted"));
  EXPECT_FALSE(service.counters().redis_reachable);

  redis->start();
  Store store(options_of(section));
  store.write_csv("tmp/3/late", {{"x"}});
  ASSERT_TRUE(wait_until(
      [&] {
        service.maintain(std::chrono::steady_clock::now());
        return !store.exists("tmp/3/late");
      },
      60s, "the failed cleanup to be retried"));
  ASSERT_TRUE(wait_until([&] { return service.counters().redis_reachable; }, 30s, "recovery"));
  // The janitor's thread counts the cleanup after it removed the file: wait for the count too.
  EXPECT_TRUE(wait_until([&] { return service.counters().job_cleanups >= 1; }, 30s,
                         "the retried cleanup to be counted"));
}

}  // namespace
}  // namespace clupy::master
