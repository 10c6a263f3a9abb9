// Store round trips, metadata operations, content types and streams, against a real Redis.
#include <gtest/gtest.h>

#include <clupy/store.hpp>
#include <cstdlib>
#include <fstream>
#include <random>

#include "redis_server.hpp"
#include "sha256_hex.hpp"

namespace clupy {
namespace {

using test::read_file;
using test::write_file;

using test::sha256_hex;

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; i += 8) {
    auto v = rng();
    for (std::size_t j = 0; j < 8 && i + j < n; ++j) s[i + j] = static_cast<char>(v >> (8 * j));
  }
  return s;
}

class StoreTest : public test::SharedRedisTest {
 protected:
  // Puts `data` from a local file, gets it back to another, and checks bytes and SHA-256 (as
  // computed by stat() when the store defers it, or by the writer with sha256_on_write).
  void round_trip(Store& store, const std::string& data, const std::string& name) {
    write_file(dir_.file("in"), data);
    FileStat put = store.put_file(dir_.file("in"), name);
    EXPECT_EQ(put.size, data.size());
    FileStat got = store.get_file(name, dir_.file("out"));
    std::string back = read_file(dir_.file("out"));
    EXPECT_EQ(back.size(), data.size());
    EXPECT_TRUE(back == data) << "bytes differ for " << name;
    const std::string digest = sha256_hex(data);
    EXPECT_EQ(store.stat(name).sha256, digest);
    if (!put.sha256.empty()) {
      EXPECT_EQ(put.sha256, digest);
      EXPECT_EQ(got.sha256, digest);
    }
  }

  test::TempDir dir_;
};

TEST_F(StoreTest, EmptyFileRoundTrips) {
  Store store(options());
  round_trip(store, "", "empty.bin");
  EXPECT_EQ(store.stat("empty.bin").sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_F(StoreTest, OneByteFileRoundTrips) {
  Store store(options());
  round_trip(store, "x", "one.bin");
}

TEST_F(StoreTest, Sha256OnWriteIsReturnedByThePut) {
  StoreOptions o = options();
  o.sha256_on_write = true;
  o.chunk_size = 4096;
  Store store(o);
  std::string data = random_bytes(3 * 4096 + 5, 3);
  write_file(dir_.file("in"), data);
  EXPECT_EQ(store.put_file(dir_.file("in"), "hashed.bin").sha256, sha256_hex(data));
  EXPECT_EQ(store.get_file("hashed.bin", dir_.file("out")).sha256, sha256_hex(data));
}

TEST_F(StoreTest, ChunkBoundarySizesRoundTrip) {
  StoreOptions o = options();
  o.chunk_size = 4096;
  o.pipeline_depth = 3;
  Store store(o);
  for (std::size_t size : {4095u, 4096u, 4097u, 8192u, 3 * 4096u + 1}) {
    SCOPED_TRACE(size);
    round_trip(store, random_bytes(size, static_cast<unsigned>(size)),
               "boundary/" + std::to_string(size));
  }
}

TEST_F(StoreTest, LargeFileRoundTripsWithDefaultChunks) {
  // 256 MiB by default; CLUPY_STORE_BIG_MB makes it smaller on slow (sanitizer) builds.
  std::size_t mib = 256;
  if (const char* env = std::getenv("CLUPY_STORE_BIG_MB")) mib = std::strtoul(env, nullptr, 10);
  Store store(options());
  std::string data = random_bytes(mib << 20, 7);
  round_trip(store, data, "big.bin");
  store.remove("big.bin");
}

TEST_F(StoreTest, StatReportsMetadata) {
  Store store(options());
  auto before = std::chrono::system_clock::now() - std::chrono::minutes(5);
  write_file(dir_.file("a.txt"), "hello");
  store.put_file(dir_.file("a.txt"), "docs/a.txt");
  FileStat s = store.stat("docs/a.txt");
  EXPECT_EQ(s.name, "docs/a.txt");
  EXPECT_EQ(s.size, 5u);
  EXPECT_EQ(s.sha256, sha256_hex("hello"));
  EXPECT_EQ(s.content_type, kContentTypeBinary);
  EXPECT_FALSE(s.pinned);
  EXPECT_GT(s.created, before);
  EXPECT_GE(s.last_access, s.created);
}

TEST_F(StoreTest, MissingFileIsNotFound) {
  Store store(options());
  EXPECT_FALSE(store.exists("nope"));
  try {
    store.stat("nope");
    FAIL() << "stat of a missing file succeeded";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kNotFound);
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
  EXPECT_THROW(store.open_read("nope"), StoreError);
  EXPECT_THROW(store.pin("nope"), StoreError);
  EXPECT_FALSE(store.remove("nope"));
}

TEST_F(StoreTest, ListReturnsFilesUnderPrefixSorted) {
  Store store(options());
  for (const char* n : {"data/b.csv", "data/a.csv", "data2/c", "other/d", "data/sub/e"}) {
    StoreWriter w = store.open_write(n);
    w << n;
    w.commit();
  }
  std::vector<std::string> names;
  for (const auto& s : store.list("data/")) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"data/a.csv", "data/b.csv", "data/sub/e"}));
  EXPECT_EQ(store.list("").size(), 5u);
  EXPECT_TRUE(store.list("zzz").empty());
}

TEST_F(StoreTest, RemoveHidesTheFile) {
  Store store(options());
  store.write_csv("x.csv", {{"a"}});
  EXPECT_TRUE(store.exists("x.csv"));
  EXPECT_TRUE(store.remove("x.csv"));
  EXPECT_FALSE(store.exists("x.csv"));
  EXPECT_TRUE(store.list("").empty());
}

TEST_F(StoreTest, PinAndUnpinAreRecordedAndSurviveReplacement) {
  Store store(options());
  store.write_csv("p.csv", {{"1"}});
  store.pin("p.csv");
  EXPECT_TRUE(store.stat("p.csv").pinned);
  store.write_csv("p.csv", {{"2"}});
  EXPECT_TRUE(store.stat("p.csv").pinned);
  store.unpin("p.csv");
  EXPECT_FALSE(store.stat("p.csv").pinned);
}

TEST_F(StoreTest, RenameMovesAndReplacesTheTarget) {
  Store store(options());
  store.write_csv("from.csv", {{"from"}});
  store.write_csv("to.csv", {{"to"}});
  store.rename("from.csv", "to.csv");
  EXPECT_FALSE(store.exists("from.csv"));
  CsvReader csv = store.read_csv("to.csv");
  std::vector<std::string> row;
  ASSERT_TRUE(csv.next(row));
  EXPECT_EQ(row, std::vector<std::string>{"from"});
  EXPECT_EQ(store.list("").size(), 1u);
  try {
    store.rename("from.csv", "x");
    FAIL() << "renaming a missing file succeeded";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kNotFound);
  }
}

TEST_F(StoreTest, StreamsWorkWithFormattedIo) {
  Store store(options());
  {
    StoreWriter w = store.open_write("numbers.txt");
    for (int i = 0; i < 1000; ++i) w << i << ' ';
    w.close();
  }
  StoreReader r = store.open_read("numbers.txt");
  int value = 0, count = 0;
  long sum = 0;
  while (r >> value) {
    sum += value;
    ++count;
  }
  EXPECT_EQ(count, 1000);
  EXPECT_EQ(sum, 999 * 1000 / 2);
}

TEST_F(StoreTest, InvalidNamesAndUrlsAreRejected) {
  Store store(options());
  EXPECT_THROW(store.exists(""), StoreError);
  EXPECT_THROW(store.open_write(std::string("a\nb")), StoreError);
  StoreOptions bad = options();
  bad.redis_url = "http://localhost";
  EXPECT_THROW(Store{bad}, StoreError);
}

TEST_F(StoreTest, CsvIsDetectedAndStreamedRowByRow) {
  Store store(options());
  std::vector<std::vector<std::string>> rows = {
      {"name", "note", "n"},
      {"a,b", "she said \"hi\"", "1"},
      {"multi\nline", "", "2"},
      {"", "x", ""},
  };
  FileStat s = store.write_csv("datasets/t.csv", rows);
  EXPECT_EQ(s.content_type, kContentTypeCsv);
  CsvReader csv = store.read_csv("datasets/t.csv");
  std::vector<std::string> row;
  std::vector<std::vector<std::string>> back;
  while (csv.next(row)) back.push_back(row);
  EXPECT_EQ(back, rows);
}

TEST_F(StoreTest, CsvNameWithBinaryContentIsStoredAsBytes) {
  Store store(options());
  StoreWriter w = store.open_write("weird.csv");
  w << std::string("\0\1\2\"x", 5);
  EXPECT_EQ(w.commit().content_type, kContentTypeBinary);
}

TEST_F(StoreTest, FakeParquetIsRefusedAndNothingIsPublished) {
  Store store(options());
  write_file(dir_.file("fake.parquet"), "this is not parquet at all, just text");
  try {
    store.put_file(dir_.file("fake.parquet"), "fake.parquet");
    FAIL() << "a fake Parquet file was accepted";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kRefused);
    EXPECT_NE(std::string(e.what()).find("Parquet"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(store.exists("fake.parquet"));
  // Magic at the front only (a truncated Parquet file), written through a stream.
  StoreWriter w = store.open_write("truncated.parquet");
  w << "PAR1" << std::string(100, 'x');
  EXPECT_THROW(w.commit(), StoreError);
  EXPECT_FALSE(store.exists("truncated.parquet"));
}

TEST_F(StoreTest, RealParquetIsAcceptedByteIdentical) {
  Store store(options());
  std::string path = std::string(CLUPY_SOURCE_DIR) + "/tests/store/data/sample.parquet";
  std::string original = read_file(path);
  ASSERT_GT(original.size(), 12u);
  FileStat s = store.put_file(path, "datasets/sample.parquet");
  EXPECT_EQ(s.content_type, kContentTypeParquet);
  store.get_file("datasets/sample.parquet", dir_.file("back.parquet"));
  EXPECT_TRUE(read_file(dir_.file("back.parquet")) == original);
}

TEST_F(StoreTest, UnreadableLocalFileIsALocalError) {
  Store store(options());
  try {
    store.put_file(dir_.file("does-not-exist"), "x");
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kLocalIo);
  }
}

TEST_F(StoreTest, ProgressReachesTheTotal) {
  StoreOptions o = options();
  o.chunk_size = 1024;
  Store store(o);
  write_file(dir_.file("p"), random_bytes(10000, 3));
  std::uint64_t last = 0, total = 0;
  store.put_file(dir_.file("p"), "p", [&](std::uint64_t d, std::uint64_t t) {
    EXPECT_GE(d, last);
    last = d;
    total = t;
  });
  EXPECT_EQ(last, 10000u);
  EXPECT_EQ(total, 10000u);
}

}  // namespace
}  // namespace clupy
