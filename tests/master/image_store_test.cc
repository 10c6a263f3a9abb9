// The master's ImageStore: verified uploads, and its bound (image_store_size): the least
// recently used image that no open job pins is evicted to make room; pinned images and the
// image just stored never are.
#include <gtest/gtest.h>

#include <filesystem>

#include "base/sha256.hpp"
#include "master/images.hpp"
#include "support/process.hpp"

namespace clupy::master {
namespace {

namespace fs = std::filesystem;

class ImageStoreTest : public ::testing::Test {
 protected:
  // Uploads `bytes` whole; returns "" once stored, else the store's message.
  std::string store(ImageStore& images, const std::string& bytes) {
    const std::string sha = base::sha256(bytes);
    if (auto refused = images.begin_upload(sha, bytes.size(), 1)) return *refused;
    auto done = images.add_chunk(sha, 1, 0, bytes, true);
    return done ? *done : "upload not finished";
  }
  bool on_disk(const ImageStore& images, const std::string& bytes) const {
    return fs::exists(images.path_of(base::sha256(bytes)));
  }

  test::TempDir dir_;
  const std::string a_ = std::string(400, 'a');
  const std::string b_ = std::string(400, 'b');
  const std::string c_ = std::string(400, 'c');
};

TEST_F(ImageStoreTest, StoredImageIsVerifiedAndKept) {
  ImageStore images(dir_.path(), 1000);
  EXPECT_EQ(store(images, a_), "");
  EXPECT_TRUE(images.has(base::sha256(a_)));
  EXPECT_TRUE(on_disk(images, a_));
  EXPECT_EQ(images.total_bytes(), 400u);
}

TEST_F(ImageStoreTest, BytesThatDoNotMatchTheDigestAreDiscarded) {
  ImageStore images(dir_.path(), 1000);
  const std::string sha = base::sha256(a_);
  ASSERT_EQ(images.begin_upload(sha, a_.size(), 1), std::nullopt);
  auto result = images.add_chunk(sha, 1, 0, b_, true);
  ASSERT_TRUE(result.has_value());
  EXPECT_NE(result->find("hash to"), std::string::npos);
  EXPECT_FALSE(images.has(sha));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_.path()), fs::directory_iterator()), 0);
}

TEST_F(ImageStoreTest, AFetchedFileIsAddedOnlyWhenItsDigestMatches) {
  ImageStore images(dir_.path() + "/images", 1000);
  const std::string good = dir_.file("good.fetch");
  const std::string bad = dir_.file("bad.fetch");
  test::write_file(good, a_);
  test::write_file(bad, b_);
  EXPECT_NE(images.add_file(base::sha256(a_), bad).find("SHA-256"), std::string::npos);
  EXPECT_FALSE(images.has(base::sha256(a_)));
  EXPECT_FALSE(fs::exists(bad));  // a refused file is removed
  EXPECT_EQ(images.add_file(base::sha256(a_), good), "");
  EXPECT_TRUE(images.has(base::sha256(a_)));
  EXPECT_TRUE(on_disk(images, a_));
  EXPECT_FALSE(fs::exists(good));  // moved, not copied
  EXPECT_EQ(images.total_bytes(), 400u);
}

TEST_F(ImageStoreTest, LeastRecentlyUsedUnpinnedImageIsEvictedForANewOne) {
  ImageStore images(dir_.path(), 1000);
  ASSERT_EQ(store(images, a_), "");
  ASSERT_EQ(store(images, b_), "");
  images.pin(base::sha256(a_));  // used more recently than b
  images.unpin(base::sha256(a_));
  ASSERT_EQ(store(images, c_), "");  // 1200 bytes: one must go
  EXPECT_TRUE(on_disk(images, a_));
  EXPECT_FALSE(on_disk(images, b_));
  EXPECT_FALSE(images.has(base::sha256(b_)));
  EXPECT_TRUE(on_disk(images, c_));
  EXPECT_EQ(images.total_bytes(), 800u);
}

TEST_F(ImageStoreTest, PinnedImagesAreNeverEvicted) {
  ImageStore images(dir_.path(), 1000);
  ASSERT_EQ(store(images, a_), "");
  ASSERT_EQ(store(images, b_), "");
  images.pin(base::sha256(a_));
  images.pin(base::sha256(b_));
  // Over budget while every other image is in use: the store stays over until jobs end.
  ASSERT_EQ(store(images, c_), "");
  EXPECT_TRUE(on_disk(images, a_));
  EXPECT_TRUE(on_disk(images, b_));
  EXPECT_TRUE(on_disk(images, c_));
  EXPECT_EQ(images.total_bytes(), 1200u);
}

TEST_F(ImageStoreTest, ImagePinnedTwiceStaysUntilBothUnpin) {
  ImageStore images(dir_.path(), 1000);
  ASSERT_EQ(store(images, a_), "");
  images.pin(base::sha256(a_));
  images.pin(base::sha256(a_));
  images.unpin(base::sha256(a_));
  ASSERT_EQ(store(images, b_), "");
  ASSERT_EQ(store(images, c_), "");  // b is the unpinned one to go
  EXPECT_TRUE(on_disk(images, a_));
  EXPECT_FALSE(on_disk(images, b_));
  images.unpin(base::sha256(a_));
  const std::string d(400, 'd');
  ASSERT_EQ(store(images, d), "");  // now a, the least recently used, goes
  EXPECT_FALSE(on_disk(images, a_));
  EXPECT_TRUE(on_disk(images, c_));
}

TEST_F(ImageStoreTest, ImageLargerThanTheStoreIsRefused) {
  ImageStore images(dir_.path(), 1000);
  const std::string big(1001, 'x');
  auto refused = images.begin_upload(base::sha256(big), big.size(), 1);
  ASSERT_TRUE(refused.has_value());
  EXPECT_NE(refused->find("image_store_size"), std::string::npos);
}

TEST_F(ImageStoreTest, ImagesFromAnEarlierRunAreIndexedAndBrokenUploadsRemoved) {
  {
    ImageStore images(dir_.path(), 1000);
    ASSERT_EQ(store(images, a_), "");
  }
  test::write_file(dir_.file(std::string(64, '0') + ".part"), "half");
  ImageStore again(dir_.path(), 1000);
  EXPECT_TRUE(again.has(base::sha256(a_)));
  EXPECT_EQ(again.total_bytes(), 400u);
  EXPECT_FALSE(fs::exists(dir_.file(std::string(64, '0') + ".part")));
}

}  // namespace
}  // namespace clupy::master
