// The janitor: idle TTL, pins, the memory budget's LRU order and job temporaries.
#include "store/janitor.hpp"

#include <gtest/gtest.h>

#include <clupy/store.hpp>

#include "redis_server.hpp"
#include "store/redis.hpp"

namespace clupy {
namespace {

using namespace std::chrono_literals;
using store::Janitor;
using store::JanitorPolicy;
using store::Removal;

class JanitorTest : public test::SharedRedisTest {
 protected:
  void put(Store& store, const std::string& name, std::size_t bytes) {
    StoreWriter w = store.open_write(name);
    w << std::string(bytes, 'j');
    w.commit();
  }
  std::vector<std::string> names(Store& store) {
    std::vector<std::string> out;
    for (const auto& s : store.list("")) out.push_back(s.name);
    return out;
  }
  static std::vector<std::string> removed(const store::JanitorReport& r, Removal::Reason why) {
    std::vector<std::string> out;
    for (const auto& x : r.removed)
      if (x.reason == why) out.push_back(x.name);
    return out;
  }
};

TEST_F(JanitorTest, IdleFilesExpireAfterTheTtlUnlessPinned) {
  Store store(options());
  put(store, "idle", 10);
  put(store, "kept", 10);
  store.pin("kept");
  Janitor janitor(options(), {.memory_budget_bytes = 0, .idle_ttl = 1h, .orphan_grace = 1min});
  auto now = janitor.server_time();
  EXPECT_TRUE(janitor.sweep(now + 59min).removed.empty());
  store::JanitorReport r = janitor.sweep(now + 61min);
  EXPECT_EQ(removed(r, Removal::Reason::kIdleTtl), std::vector<std::string>{"idle"});
  EXPECT_EQ(names(store), std::vector<std::string>{"kept"});
  EXPECT_EQ(r.blobs_deleted, 1u) << "an expired file's chunks go at once (no reader had it open)";
  EXPECT_EQ(r.files, 1u);
  EXPECT_EQ(r.live_bytes, 10u);
}

TEST_F(JanitorTest, ReadingAFileResetsItsIdleClock) {
  Store store(options());
  put(store, "read-again", 10);
  put(store, "untouched", 10);
  Janitor janitor(options(), {.memory_budget_bytes = 0, .idle_ttl = 1h, .orphan_grace = 1min});
  // Make both files look two hours idle, as if written long ago.
  long long old_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         (janitor.server_time() - 2h).time_since_epoch())
                         .count();
  store::RedisConnection c(store::parse_redis_url(server_->url()), 5s, 5s);
  for (const char* n : {"read-again", "untouched"}) {
    c.call({"HSET", options().key_prefix + "file:" + n, "atime", std::to_string(old_ms)});
    c.call({"ZADD", options().key_prefix + "atime", std::to_string(old_ms), n});
  }
  store.open_read("read-again");
  store::JanitorReport r = janitor.sweep();
  EXPECT_EQ(removed(r, Removal::Reason::kIdleTtl), std::vector<std::string>{"untouched"});
  EXPECT_EQ(names(store), std::vector<std::string>{"read-again"});
}

TEST_F(JanitorTest, OverBudgetRemovesLeastRecentlyUsedUnpinnedFirst) {
  Store store(options());
  // Written in this order, so the access order is a, b, c, d; then reading a makes it newest.
  for (const char* n : {"a", "b", "c", "d"}) put(store, n, 1000);
  Janitor janitor(options(), {.memory_budget_bytes = 2500, .idle_ttl = 0ms, .orphan_grace = 1min});
  auto clock = janitor.server_time();
  // Access times are in milliseconds: make sure "a"'s read is strictly later than d's write.
  ASSERT_TRUE(test::wait_until([&] { return janitor.server_time() > clock; }, 10s, "a new ms"));
  store.open_read("a");
  store.pin("b");
  store::JanitorReport r = janitor.sweep();
  EXPECT_EQ(removed(r, Removal::Reason::kOverBudget), (std::vector<std::string>{"c", "d"}));
  EXPECT_EQ(names(store), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.live_bytes, 2000u);
  EXPECT_EQ(r.files, 2u);
}

TEST_F(JanitorTest, PinnedFilesMayKeepTheStoreOverBudget) {
  Store store(options());
  put(store, "big", 5000);
  store.pin("big");
  Janitor janitor(options(), {.memory_budget_bytes = 100, .idle_ttl = 0ms, .orphan_grace = 1min});
  store::JanitorReport r = janitor.sweep();
  EXPECT_TRUE(r.removed.empty());
  EXPECT_EQ(r.live_bytes, 5000u);
  EXPECT_TRUE(store.exists("big"));
}

TEST_F(JanitorTest, JobTemporariesAreRemovedWhenTheJobEnds) {
  Store store(options());
  put(store, "tmp/job-1/part-0", 10);
  put(store, "tmp/job-1/part-1", 10);
  put(store, "tmp/job-10/part-0", 10);
  put(store, "tmp/job-1-keep", 10);
  put(store, "results.csv", 10);
  Janitor janitor(options(), {});
  store::JanitorReport r = janitor.remove_job_temporaries("job-1");
  EXPECT_EQ(removed(r, Removal::Reason::kJobEnded),
            (std::vector<std::string>{"tmp/job-1/part-0", "tmp/job-1/part-1"}));
  EXPECT_EQ(r.blobs_deleted, 2u);
  EXPECT_EQ(names(store),
            (std::vector<std::string>{"results.csv", "tmp/job-1-keep", "tmp/job-10/part-0"}));
  EXPECT_EQ(store::job_temporary_prefix("job-1"), "tmp/job-1/");
  EXPECT_THROW(janitor.remove_job_temporaries("a/b"), StoreError);
}

TEST_F(JanitorTest, ReasonsHaveStableNamesForMetrics) {
  EXPECT_STREQ(store::to_string(Removal::Reason::kIdleTtl), "idle_ttl");
  EXPECT_STREQ(store::to_string(Removal::Reason::kOverBudget), "over_budget");
  EXPECT_STREQ(store::to_string(Removal::Reason::kJobEnded), "job_ended");
  EXPECT_STREQ(store::to_string(Removal::Reason::kOrphan), "orphan");
}

}  // namespace
}  // namespace clupy
