// Readers never see a torn file: concurrent replacement, readers that outlive a replacement,
// abandoned writers and a writer SIGKILLed mid-write.
#include <gtest/gtest.h>

#include <atomic>
#include <clupy/store.hpp>
#include <thread>

#include "redis_server.hpp"
#include "store/janitor.hpp"
#include "store/redis.hpp"

namespace clupy {
namespace {

class AtomicityTest : public test::SharedRedisTest {
 protected:
  // Keys under this test's prefix matching `pattern` (e.g. "chunk:*").
  long long count_keys(const std::string& pattern) {
    store::RedisConnection c(store::parse_redis_url(server_->url()), std::chrono::seconds(5),
                             std::chrono::seconds(5));
    long long n = 0;
    std::string cursor = "0";
    do {
      store::Reply r =
          c.call({"SCAN", cursor, "MATCH", options().key_prefix + pattern, "COUNT", "1000"});
      cursor = std::string(r[0].str());
      n += static_cast<long long>(r[1].size());
    } while (cursor != "0");
    return n;
  }
};

// Version v of the file: (200 KiB + v KiB) bytes, each the byte 'a' + v % 26.
std::string version(int v) {
  return std::string((200 + static_cast<std::size_t>(v)) * 1024, static_cast<char>('a' + v % 26));
}

TEST_F(AtomicityTest, ConcurrentReaderNeverSeesATornFile) {
  StoreOptions o = options();
  o.chunk_size = 16 * 1024;  // many chunks per version, so a torn read would show
  o.pipeline_depth = 2;
  {
    Store store(o);
    StoreWriter w = store.open_write("shared.bin");
    w << version(0);
    w.commit();
  }
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    Store store(o);
    for (int v = 1; v <= 40 && !stop; ++v) {
      StoreWriter w = store.open_write("shared.bin");
      w << version(v);
      w.commit();
      written = v;
    }
  });
  Store store(o);
  int reads = 0, distinct = 0;
  char last = 0;
  while (written < 40 || reads < 10) {
    StoreReader r = store.open_read("shared.bin");
    std::string content((std::istreambuf_iterator<char>(r)), std::istreambuf_iterator<char>());
    ASSERT_FALSE(content.empty());
    int v = static_cast<int>(content.size() / 1024) - 200;
    ASSERT_EQ(content.size() % 1024, 0u);
    ASSERT_EQ(content, version(v)) << "torn read at version " << v;
    EXPECT_EQ(r.stat().size, content.size());
    if (content[0] != last) ++distinct;
    last = content[0];
    ++reads;
  }
  stop = true;
  writer.join();
  EXPECT_GE(reads, 10);
  EXPECT_GE(distinct, 1);
  EXPECT_EQ(store.stat("shared.bin").size, version(40).size());
}

TEST_F(AtomicityTest, ReaderFinishesTheVersionItOpened) {
  StoreOptions o = options();
  o.chunk_size = 4096;
  o.pipeline_depth = 1;
  Store store(o);
  std::string v1(64 * 1024, '1'), v2(32 * 1024, '2');
  StoreWriter w = store.open_write("f");
  w << v1;
  w.commit();
  StoreReader r = store.open_read("f");
  std::string head(1000, '\0');
  r.read(head.data(), 1000);
  // Replaced and then removed while the reader is in the middle.
  StoreWriter w2 = store.open_write("f");
  w2 << v2;
  w2.commit();
  EXPECT_EQ(store.stat("f").size, v2.size());
  store.remove("f");
  std::string rest((std::istreambuf_iterator<char>(r)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(head + rest == v1);
}

TEST_F(AtomicityTest, UncommittedWriterPublishesNothingAndCleansUp) {
  Store store(options());
  {
    StoreWriter w = store.open_write("never");
    w << std::string(3 << 20, 'x');
  }
  EXPECT_FALSE(store.exists("never"));
  EXPECT_EQ(count_keys("chunk:*"), 0);
  EXPECT_EQ(count_keys("writing"), 0);
}

TEST_F(AtomicityTest, ReplacingKeepsTheOldVersionUntilTheJanitorsGrace) {
  StoreOptions o = options();
  Store store(o);
  store.write_csv("r.csv", {{"old"}});
  store.write_csv("r.csv", {{"new"}});
  EXPECT_EQ(count_keys("chunk:*"), 2);
  store::Janitor janitor(o, {.memory_budget_bytes = 0,
                             .idle_ttl = std::chrono::milliseconds(0),
                             .orphan_grace = std::chrono::minutes(10)});
  auto now = janitor.server_time();
  EXPECT_EQ(janitor.sweep(now).blobs_deleted, 0u);
  EXPECT_EQ(count_keys("chunk:*"), 2);
  store::JanitorReport later = janitor.sweep(now + std::chrono::minutes(11));
  EXPECT_EQ(later.blobs_deleted, 1u);
  EXPECT_EQ(count_keys("chunk:*"), 1);
  std::vector<std::string> row;
  CsvReader csv = store.read_csv("r.csv");
  ASSERT_TRUE(csv.next(row));
  EXPECT_EQ(row[0], "new");
}

TEST_F(AtomicityTest, ReaderPastTheGraceGetsAClearError) {
  StoreOptions o = options();
  o.chunk_size = 1024;
  o.pipeline_depth = 1;
  Store store(o);
  StoreWriter w = store.open_write("g");
  w << std::string(10 * 1024, 'g');
  w.commit();
  StoreReader r = store.open_read("g");
  r.get();
  store.remove("g");
  store::Janitor janitor(o, {});
  janitor.sweep(janitor.server_time() + std::chrono::hours(1));
  try {
    std::string rest((std::istreambuf_iterator<char>(r)), std::istreambuf_iterator<char>());
    FAIL() << "read " << rest.size() << " bytes of a deleted version";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kConflict);
    EXPECT_NE(std::string(e.what()).find("deleted while it was read"), std::string::npos);
  }
}

TEST_F(AtomicityTest, KilledWriterLeavesNoFileAndItsOrphanIsCollected) {
  StoreOptions o = options();
  test::TempDir dir;
  test::ChildProcess writer(
      {.argv = {STORE_WRITER_HELPER, server_->url(), o.key_prefix, "victim.csv", "8"},
       .env = {},
       .working_dir = "",
       .log_path = dir.file("writer.log")});
  ASSERT_TRUE(test::wait_until([&] { return writer.log().find("written") != std::string::npos; },
                               std::chrono::seconds(60), "the writer to upload 8 MiB"))
      << writer.log();
  writer.signal(SIGKILL);
  ASSERT_TRUE(writer.wait(std::chrono::seconds(10)).has_value());

  Store store(o);
  EXPECT_FALSE(store.exists("victim.csv"));
  EXPECT_TRUE(store.list("").empty());
  EXPECT_GT(count_keys("chunk:*"), 0) << "the writer should have left chunks behind";

  store::Janitor janitor(o, {.memory_budget_bytes = 0,
                             .idle_ttl = std::chrono::milliseconds(0),
                             .orphan_grace = std::chrono::minutes(5)});
  auto now = janitor.server_time();
  EXPECT_EQ(janitor.sweep(now).count(store::Removal::Reason::kOrphan), 0u)
      << "collected within the grace period";
  store::JanitorReport report = janitor.sweep(now + std::chrono::minutes(6));
  EXPECT_EQ(report.count(store::Removal::Reason::kOrphan), 1u);
  EXPECT_EQ(report.blobs_deleted, 1u);
  EXPECT_GE(report.bytes_freed, 4u << 20);
  EXPECT_EQ(count_keys("chunk:*"), 0);
  EXPECT_EQ(count_keys("writing"), 0);
}

TEST_F(AtomicityTest, WriterWhoseLeaseWasCollectedCannotCommit) {
  StoreOptions o = options();
  Store store(o);
  StoreWriter w = store.open_write("slow");
  w << "data";
  store::Janitor janitor(o, {.memory_budget_bytes = 0,
                             .idle_ttl = std::chrono::milliseconds(0),
                             .orphan_grace = std::chrono::minutes(1)});
  janitor.sweep(janitor.server_time() + std::chrono::minutes(2));
  try {
    w.commit();
    FAIL() << "a collected writer committed";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kConflict);
  }
  EXPECT_FALSE(store.exists("slow"));
}

}  // namespace
}  // namespace clupy
