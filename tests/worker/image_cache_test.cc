// The server's image cache in a temporary directory: fetching, verifying, reusing a file
// another server (or an earlier run) left, refusing corrupt bytes.
#include "worker/image_cache.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "support/process.hpp"

namespace clupy::worker {
namespace {

namespace fs = std::filesystem;
using Need = ImageCache::Need;
using Chunk = ImageCache::ChunkResult;

class WorkerImageCacheTest : public ::testing::Test {
 protected:
  WorkerImageCacheTest() : cache_(dir_.path()) {}

  std::string file_of(const std::string& sha) const {
    return dir_.path() + "/images/" + base::to_hex(sha);
  }
  // Fetches `bytes` in chunks of `chunk` bytes; returns the last chunk's result.
  Chunk deliver(const std::string& sha, const std::string& bytes, std::size_t chunk) {
    Chunk result = Chunk::kIgnored;
    for (std::size_t at = 0; at < bytes.size(); at += chunk) {
      std::string error;
      result =
          cache_.add_chunk(sha, at, bytes.substr(at, chunk), at + chunk >= bytes.size(), error);
      if (result == Chunk::kFailed) last_error_ = error;
    }
    return result;
  }

  test::TempDir dir_;
  ImageCache cache_;
  std::string last_error_;
  const std::string program_ = std::string(5000, 'x') + "program";
  const std::string sha_ = base::sha256(program_);
};

TEST_F(WorkerImageCacheTest, MissingImageIsFetchedOnceAndVerified) {
  EXPECT_EQ(cache_.need(sha_), Need::kFetch);
  EXPECT_EQ(cache_.need(sha_), Need::kFetching);  // a second task does not fetch again
  EXPECT_FALSE(cache_.ready(sha_));
  EXPECT_EQ(deliver(sha_, program_, 1024), Chunk::kReady);
  EXPECT_TRUE(cache_.ready(sha_));
  EXPECT_EQ(cache_.need(sha_), Need::kReady);
  EXPECT_EQ(cache_.path(sha_), file_of(sha_));
  EXPECT_EQ(test::read_file(file_of(sha_)), program_);
  struct stat info {};
  ASSERT_EQ(::stat(file_of(sha_).c_str(), &info), 0);
  EXPECT_TRUE(info.st_mode & S_IXUSR);
  EXPECT_EQ(cache_.counters().misses, 1u);
  EXPECT_EQ(cache_.counters().hits, 0u);
  EXPECT_EQ(cache_.counters().bytes_fetched, program_.size());
}

TEST_F(WorkerImageCacheTest, FileAlreadyInTheDirectoryIsVerifiedAndCountedAsAHit) {
  test::write_file(file_of(sha_), program_);
  EXPECT_EQ(cache_.need(sha_), Need::kReady);
  EXPECT_EQ(cache_.counters().hits, 1u);
  EXPECT_EQ(cache_.counters().misses, 0u);
}

TEST_F(WorkerImageCacheTest, CorruptFileInTheDirectoryIsRemovedAndFetched) {
  test::write_file(file_of(sha_), "not the program");
  EXPECT_EQ(cache_.need(sha_), Need::kFetch);
  EXPECT_FALSE(fs::exists(file_of(sha_)));
  EXPECT_EQ(deliver(sha_, program_, 4096), Chunk::kReady);
  EXPECT_EQ(test::read_file(file_of(sha_)), program_);
}

TEST_F(WorkerImageCacheTest, BytesThatDoNotMatchTheDigestAreRefused) {
  ASSERT_EQ(cache_.need(sha_), Need::kFetch);
  EXPECT_EQ(deliver(sha_, program_ + "!", 4096), Chunk::kFailed);
  EXPECT_EQ(last_error_, "the fetched image does not match its SHA-256");
  EXPECT_FALSE(cache_.ready(sha_));
  EXPECT_FALSE(fs::exists(file_of(sha_)));
  // Nothing of the attempt is left; the next task fetches again.
  EXPECT_EQ(
      std::distance(fs::directory_iterator(dir_.path() + "/images"), fs::directory_iterator()), 0);
  EXPECT_EQ(cache_.need(sha_), Need::kFetch);
}

TEST_F(WorkerImageCacheTest, ChunkOutOfOrderFailsTheFetch) {
  ASSERT_EQ(cache_.need(sha_), Need::kFetch);
  std::string error;
  EXPECT_EQ(cache_.add_chunk(sha_, 0, program_.substr(0, 100), false, error), Chunk::kMore);
  EXPECT_EQ(cache_.add_chunk(sha_, 200, program_.substr(200, 100), false, error), Chunk::kFailed);
  EXPECT_EQ(error, "image chunks arrived out of order");
  EXPECT_EQ(cache_.add_chunk(sha_, 300, program_.substr(300), true, error), Chunk::kIgnored);
}

TEST_F(WorkerImageCacheTest, ChunksOfAForgottenFetchAreIgnored) {
  ASSERT_EQ(cache_.need(sha_), Need::kFetch);
  cache_.forget_fetches();  // the master that was sending it is gone
  EXPECT_EQ(deliver(sha_, program_, 4096), Chunk::kIgnored);
  EXPECT_EQ(cache_.need(sha_), Need::kFetch);  // asked again of the next master
  EXPECT_EQ(cache_.counters().misses, 2u);
}

TEST_F(WorkerImageCacheTest, ChunkOfAnImageNobodyNeedsIsIgnored) {
  std::string error;
  EXPECT_EQ(cache_.add_chunk(sha_, 0, program_, true, error), Chunk::kIgnored);
  EXPECT_EQ(cache_.path(sha_), "");
}

TEST_F(WorkerImageCacheTest, TwoCachesSharingADirectoryVerifyEachOthersImages) {
  ImageCache other(dir_.path());
  ASSERT_EQ(cache_.need(sha_), Need::kFetch);
  ASSERT_EQ(other.need(sha_), Need::kFetch);  // both missed; each downloads to its own part
  ASSERT_EQ(deliver(sha_, program_, 4096), Chunk::kReady);
  ImageCache third(dir_.path());
  EXPECT_EQ(third.need(sha_), Need::kReady);
  EXPECT_EQ(third.counters().hits, 1u);
}

}  // namespace
}  // namespace clupy::worker
