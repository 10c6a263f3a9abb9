// The master's ServiceKeeper without coordination: records kept in a directory, read back by a
// later keeper (a restarted master), corrupt or mismatched records reported, forget() final.
#include "master/service_keeper.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "base/sha256.hpp"
#include "support/process.hpp"

namespace clupy::master {
namespace {

wire::KeptService record(const std::string& name, std::uint32_t version) {
  wire::KeptService r;
  r.mutable_definition()->set_name(name);
  r.mutable_definition()->add_entry_points("add");
  r.mutable_definition()->set_port(8080);
  r.mutable_definition()->set_replicas(2);
  r.mutable_definition()->set_auth("key");
  r.mutable_definition()->set_service_key("a-service-key-0123456789");
  r.set_image_sha256(base::sha256("the image"));
  r.set_image_name("calc");
  r.set_version(version);
  return r;
}

class ServiceKeeperTest : public ::testing::Test {
 protected:
  ServiceKeeper::Options options() const {
    ServiceKeeper::Options o;
    o.directory = dir_.file("services");
    return o;
  }
  test::TempDir dir_;
};

TEST_F(ServiceKeeperTest, ALaterKeeperReadsWhatWasKeptUntilItIsForgotten) {
  {
    ServiceKeeper keeper(options());
    EXPECT_TRUE(keeper.load().empty());
    keeper.keep(record("calc", 1), "");
    keeper.keep(record("calc", 2), "");  // a rolling update replaces the record
    keeper.keep(record("other", 1), "");
  }
  ServiceKeeper restarted(options());
  auto loaded = restarted.load();
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_EQ(loaded[0].name, "calc");
  ASSERT_TRUE(loaded[0].record) << loaded[0].error;
  EXPECT_EQ(loaded[0].record->version(), 2u);
  EXPECT_EQ(loaded[0].record->definition().service_key(), "a-service-key-0123456789");
  EXPECT_EQ(loaded[0].record->image_sha256(), base::sha256("the image"));
  EXPECT_EQ(loaded[1].name, "other");
  restarted.forget("calc");
  loaded = ServiceKeeper(options()).load();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].name, "other");
}

TEST_F(ServiceKeeperTest, CorruptMismatchedAndIncompleteRecordsAreReportedByName) {
  { ServiceKeeper keeper(options()); }
  test::write_file(dir_.file("services/garbage.kept"), "\xff\xff not a record");
  test::write_file(dir_.file("services/renamed.kept"), record("calc", 1).SerializeAsString());
  wire::KeptService incomplete = record("partial", 1);
  incomplete.clear_image_sha256();
  test::write_file(dir_.file("services/partial.kept"), incomplete.SerializeAsString());
  test::write_file(dir_.file("services/ignored.tmp"), "a half-written record");
  ServiceKeeper keeper(options());
  const auto loaded = keeper.load();
  ASSERT_EQ(loaded.size(), 3u);
  for (const auto& l : loaded) EXPECT_FALSE(l.record) << l.name;
  EXPECT_EQ(loaded[0].name, "garbage");
  EXPECT_NE(loaded[0].error.find("is corrupt"), std::string::npos) << loaded[0].error;
  EXPECT_EQ(loaded[1].name, "partial");
  EXPECT_NE(loaded[1].error.find("incomplete"), std::string::npos) << loaded[1].error;
  EXPECT_EQ(loaded[2].name, "renamed");
  EXPECT_NE(loaded[2].error.find("names another service ('calc')"), std::string::npos)
      << loaded[2].error;
}

TEST_F(ServiceKeeperTest, WithoutASharedStoreAMissingImageIsExplained) {
  ServiceKeeper keeper(options());
  ImageStore images(dir_.file("images"), 1 << 20);
  const std::string why = keeper.fetch_image(base::sha256("the image"), images);
  EXPECT_NE(why.find("no store every master reaches"), std::string::npos) << why;
}

}  // namespace
}  // namespace clupy::master
