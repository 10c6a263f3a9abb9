// Read verification (docs/store.md, "Read verification"): per-chunk crc32c-x4 check values catch
// changed, truncated and misplaced chunks before their bytes are handed out; the whole-file
// SHA-256 is checked on request, and always for files written before chunks had check values.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <clupy/store.hpp>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

#include "redis_server.hpp"
#include "sha256_hex.hpp"
#include "store/chunk_check.hpp"
#include "store/redis.hpp"

namespace clupy {
namespace {

using namespace std::chrono_literals;

using test::sha256_hex;

class IntegrityTest : public test::SharedRedisTest {
 protected:
  StoreOptions options() const {
    StoreOptions o = server_->options(test::test_name());
    o.chunk_size = 4096;
    return o;
  }
  store::RedisConnection raw() const {
    return store::RedisConnection(store::parse_redis_url(server_->url()), 5s, 5s);
  }
  std::string blob_of(const std::string& name) const {
    return std::string(raw().call({"HGET", options().key_prefix + "file:" + name, "blob"}).str());
  }
  std::string chunk_key(const std::string& name, int i) const {
    return options().key_prefix + "chunk:" + blob_of(name) + ":" + std::to_string(i);
  }
  // Three chunks and a half of distinct bytes.
  static std::string content() {
    std::string s;
    for (int i = 0; i < 4096 * 3 + 2048; ++i) s += static_cast<char>('a' + (i * 7 + i / 4096) % 26);
    return s;
  }
  // Reads the whole file; returns the bytes read before an error (if any) in `partial`.
  static void read_all(Store& store, const std::string& name, std::string& partial) {
    StoreReader r = store.open_read(name);
    char c;
    while (r.get(c)) partial += c;
  }

  // Reads `name` to the end into `partial`; the StoreError that stopped it, nullopt if none did.
  static std::optional<StoreError> read_error(Store& store, const std::string& name,
                                              std::string& partial) {
    try {
      read_all(store, name, partial);
    } catch (const StoreError& e) {
      return e;
    }
    return std::nullopt;
  }
};

TEST_F(IntegrityTest, ChunksCarryACheckValueAndStatTheSha256) {
  Store store(options());
  std::string data = content();
  StoreWriter w = store.open_write("f");
  w << data;
  FileStat st = w.commit();
  EXPECT_EQ(st.sha256, "") << "the digest is deferred by default";
  EXPECT_EQ(store.stat("f").sha256, sha256_hex(data));
  auto c = raw();
  EXPECT_EQ(c.call({"HGET", options().key_prefix + "file:f", "check"}).str(), "crc32c-x4");
  std::string chunk1(c.call({"GET", chunk_key("f", 1)}).str());
  ASSERT_EQ(chunk1.size(), 4096u + 16);
  store::ChunkCheck want = store::chunk_check(1, std::string_view(data).substr(4096, 4096));
  EXPECT_EQ(chunk1.substr(4096), std::string(want.begin(), want.end()));
  std::string back;
  read_all(store, "f", back);
  EXPECT_TRUE(back == data);
}

TEST_F(IntegrityTest, AChangedByteIsCaughtBeforeTheChunkIsHandedOut) {
  Store store(options());
  std::string data = content();
  StoreWriter w = store.open_write("f");
  w << data;
  w.commit();
  raw().call({"SETRANGE", chunk_key("f", 2), "100", "#"});
  std::string partial;
  const auto e = read_error(store, "f", partial);
  ASSERT_TRUE(e) << "no error";
  EXPECT_EQ(e->code(), StoreError::Code::kCorrupt) << e->what();
  EXPECT_NE(std::string(e->what()).find("chunk 2"), std::string::npos) << e->what();
  EXPECT_EQ(partial.size(), 2 * 4096u) << "bytes of the bad chunk were handed out";
  std::string out = testing::TempDir() + "/integrity-bad-" + std::to_string(::getpid());
  EXPECT_THROW(store.get_file("f", out), StoreError);
  EXPECT_FALSE(std::ifstream(out).good()) << "a failed download left a file";
}

TEST_F(IntegrityTest, ChunksSwappedBetweenIndexesAreCaught) {
  Store store(options());
  std::string data = content();
  StoreWriter w = store.open_write("f");
  w << data;
  w.commit();
  auto c = raw();
  std::string k0 = chunk_key("f", 0), k1 = chunk_key("f", 1);
  std::string tmp = k0 + ":tmp";
  c.call({"RENAME", k0, tmp});
  c.call({"RENAME", k1, k0});
  c.call({"RENAME", tmp, k1});
  std::string partial;
  const auto e = read_error(store, "f", partial);
  ASSERT_TRUE(e) << "no error";
  EXPECT_EQ(e->code(), StoreError::Code::kCorrupt) << e->what();
  EXPECT_TRUE(partial.empty());
}

TEST_F(IntegrityTest, Sha256IsCheckedWhenAsked) {
  std::string data = content();
  {
    Store store(options());
    StoreWriter w = store.open_write("f");
    w << data;
    w.commit();
  }
  raw().call({"HSET", options().key_prefix + "file:f", "sha256", std::string(64, '0')});
  Store chunks_only(options());
  std::string back;
  read_all(chunks_only, "f", back);
  EXPECT_TRUE(back == data);
  StoreOptions o = options();
  o.verify_sha256 = true;
  Store with_sha(o);
  std::string partial;
  const auto e = read_error(with_sha, "f", partial);
  ASSERT_TRUE(e) << "no error";
  EXPECT_EQ(e->code(), StoreError::Code::kCorrupt) << e->what();
  EXPECT_NE(std::string(e->what()).find("SHA-256"), std::string::npos) << e->what();
}

TEST_F(IntegrityTest, ADeferredSha256IsComputedByTheFirstStatAndRecorded) {
  Store store(options());
  std::string data = content();
  StoreWriter w = store.open_write("f");
  w << data;
  w.commit();
  const std::string key = options().key_prefix + "file:f";
  EXPECT_EQ(raw().call({"HGET", key, "sha256"}).str(), "");
  EXPECT_EQ(store.list("").at(0).sha256, "");
  const std::string atime(raw().call({"HGET", key, "atime"}).str());
  EXPECT_EQ(store.stat("f").sha256, sha256_hex(data));
  EXPECT_EQ(raw().call({"HGET", key, "sha256"}).str(), sha256_hex(data));
  EXPECT_EQ(raw().call({"HGET", key, "atime"}).str(), atime) << "stat counted as an access";
  EXPECT_EQ(store.list("").at(0).sha256, sha256_hex(data));
}

TEST_F(IntegrityTest, StatOfACorruptFileWithADeferredSha256FailsAndRecordsNothing) {
  Store store(options());
  StoreWriter w = store.open_write("f");
  w << content();
  w.commit();
  raw().call({"SETRANGE", chunk_key("f", 1), "7", "#"});
  try {
    store.stat("f");
    ADD_FAILURE() << "stat of a corrupt file succeeded";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kCorrupt) << e.what();
  }
  EXPECT_EQ(raw().call({"HGET", options().key_prefix + "file:f", "sha256"}).str(), "");
}

TEST_F(IntegrityTest, AVerifyingReadRecordsADeferredSha256) {
  std::string data = content();
  Store store(options());
  StoreWriter w = store.open_write("f");
  w << data;
  w.commit();
  StoreOptions o = options();
  o.verify_sha256 = true;
  Store checked(o);
  std::string back;
  read_all(checked, "f", back);
  EXPECT_TRUE(back == data);
  EXPECT_EQ(raw().call({"HGET", options().key_prefix + "file:f", "sha256"}).str(),
            sha256_hex(data));
}

TEST_F(IntegrityTest, ADigestIsNeverRecordedOnANewerVersion) {
  Store store(options());
  StoreWriter first = store.open_write("f");
  first << content();
  first.commit();
  // A reader of the first version, then the file is replaced before the reader finishes.
  StoreOptions o = options();
  o.verify_sha256 = true;
  Store checked(o);
  StoreReader old_version = checked.open_read("f");
  StoreWriter second = store.open_write("f");
  second << "a newer version";
  second.commit();
  std::string back((std::istreambuf_iterator<char>(old_version)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(back == content());
  EXPECT_EQ(old_version.stat().sha256, sha256_hex(content()));
  EXPECT_EQ(raw().call({"HGET", options().key_prefix + "file:f", "sha256"}).str(), "");
  EXPECT_EQ(store.stat("f").sha256, sha256_hex("a newer version"));
}

TEST_F(IntegrityTest, FilesWithoutCheckValuesAreVerifiedBySha256) {
  // A file as writers before check values stored it: bare chunks and no `check` field.
  std::string data = content();
  std::string prefix = options().key_prefix;
  auto c = raw();
  for (int i = 0; i < 4; ++i)
    c.call({"SET", prefix + "chunk:old:" + std::to_string(i),
            std::string_view(data).substr(static_cast<std::size_t>(i) * 4096, 4096)});
  c.call({"HSET",       prefix + "file:old",
          "blob",       "old",
          "size",       std::to_string(data.size()),
          "sha256",     sha256_hex(data),
          "type",       "application/octet-stream",
          "chunk_size", "4096",
          "chunks",     "4",
          "created",    "1",
          "atime",      "1",
          "pinned",     "0"});
  Store store(options());
  std::string back;
  read_all(store, "old", back);
  EXPECT_TRUE(back == data);
  c.call({"SETRANGE", prefix + "chunk:old:3", "7", "#"});
  std::string partial;
  const auto e = read_error(store, "old", partial);
  ASSERT_TRUE(e) << "no error";
  EXPECT_EQ(e->code(), StoreError::Code::kCorrupt) << e->what();
  StoreOptions o = options();
  o.verify_reads = false;
  Store unverified(o);
  back.clear();
  read_all(unverified, "old", back);
  EXPECT_EQ(back.size(), data.size());
}

TEST_F(IntegrityTest, UnknownCheckKindIsRefusedAtOpen) {
  Store store(options());
  StoreWriter w = store.open_write("f");
  w << content();
  w.commit();
  raw().call({"HSET", options().key_prefix + "file:f", "check", "md5-x9"});
  try {
    store.open_read("f");
    FAIL() << "no error";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kCorrupt) << e.what();
  }
}

TEST_F(IntegrityTest, AnErrorReplyAmidPipelinedChunksIsAServerError) {
  // Chunk replies are parsed by the store itself (RedisConnection::read_bulk): an error reply
  // among them must surface as what it is, not as a protocol failure or as data.
  Store store(options());
  StoreWriter w = store.open_write("f");
  w << content();
  w.commit();
  auto c = raw();
  c.call({"DEL", chunk_key("f", 2)});
  c.call({"RPUSH", chunk_key("f", 2), "not a string"});
  std::string partial;
  const auto e = read_error(store, "f", partial);
  ASSERT_TRUE(e) << "no error";
  EXPECT_EQ(e->code(), StoreError::Code::kServer) << e->what();
  EXPECT_NE(std::string(e->what()).find("WRONGTYPE"), std::string::npos) << e->what();
  EXPECT_EQ(partial.size(), 2 * 4096u);
}

TEST_F(IntegrityTest, LargeWritesSentFromTheCallersBytesRoundTrip) {
  // A write of several chunks at once goes out without the chunk buffer; mixing both paths
  // must keep order, check values and the SHA-256 right.
  StoreOptions hashing = options();
  hashing.sha256_on_write = true;
  Store store(hashing);
  std::string data = content() + content();
  StoreWriter w = store.open_write("f");
  w.write(data.data(), 100);
  w.write(data.data() + 100, static_cast<std::streamsize>(data.size() - 100 - 5000));
  w.write(data.data() + data.size() - 5000, 5000);
  FileStat st = w.commit();
  EXPECT_EQ(st.size, data.size());
  EXPECT_EQ(st.sha256, sha256_hex(data));
  StoreOptions o = options();
  o.verify_sha256 = true;
  Store checked(o);
  std::string back;
  read_all(checked, "f", back);
  EXPECT_TRUE(back == data);
  // get_file writes on a helper thread, except when it hashes the file (verify_sha256).
  std::string out = testing::TempDir() + "/integrity-" + std::to_string(::getpid());
  for (Store* s : {&store, &checked}) {
    EXPECT_EQ(s->get_file("f", out).sha256, st.sha256);
    std::ifstream in(out, std::ios::binary);
    std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_TRUE(got == data);
  }
  std::remove(out.c_str());
}

}  // namespace
}  // namespace clupy
