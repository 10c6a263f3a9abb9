// `clupy store ...` commands, run in-process with captured output.
#include "store/cli.hpp"

#include <gtest/gtest.h>

#include <clupy/store.hpp>
#include <sstream>

#include "redis_server.hpp"

namespace clupy {
namespace {

class StoreCliTest : public test::SharedRedisTest {
 protected:
  int run(std::vector<std::string> args, bool progress = false) {
    out_.str("");
    err_.str("");
    return store::run_cli(std::move(args), server_->options(test::test_name()), out_, err_,
                          progress);
  }

  test::TempDir dir_;
  std::ostringstream out_, err_;
};

TEST_F(StoreCliTest, PutLsStatGetPinRmWorkTogether) {
  test::write_file(dir_.file("iris.csv"), "a,b\n1,2\n");
  ASSERT_EQ(run({"put", dir_.file("iris.csv"), "datasets/iris.csv"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("stored datasets/iris.csv (8 bytes, text/csv"), std::string::npos)
      << out_.str();

  ASSERT_EQ(run({"ls", "datasets/"}), 0);
  EXPECT_NE(out_.str().find("8\t-\t"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("\ttext/csv\tdatasets/iris.csv\n"), std::string::npos) << out_.str();

  ASSERT_EQ(run({"pin", "datasets/iris.csv"}), 0);
  ASSERT_EQ(run({"stat", "datasets/iris.csv"}), 0);
  EXPECT_NE(out_.str().find("pinned: yes\n"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("size: 8\n"), std::string::npos);
  ASSERT_EQ(run({"unpin", "datasets/iris.csv"}), 0);

  ASSERT_EQ(run({"get", "datasets/iris.csv", dir_.file("back.csv")}), 0) << err_.str();
  EXPECT_EQ(test::read_file(dir_.file("back.csv")), "a,b\n1,2\n");

  ASSERT_EQ(run({"rm", "datasets/iris.csv"}), 0);
  ASSERT_EQ(run({"ls"}), 0);
  EXPECT_EQ(out_.str(), "");
}

TEST_F(StoreCliTest, ErrorsAndUsageHaveDistinctExitCodes) {
  EXPECT_EQ(run({}), 2);
  EXPECT_EQ(run({"frobnicate"}), 2);
  EXPECT_NE(err_.str().find("usage: clupy store"), std::string::npos);
  EXPECT_EQ(run({"put", "only-one-arg"}), 2);
  EXPECT_EQ(run({"stat", "missing"}), 1);
  EXPECT_NE(err_.str().find("no file named 'missing'"), std::string::npos) << err_.str();
  EXPECT_EQ(run({"rm", "missing"}), 1);
  EXPECT_EQ(run({"get", "missing", dir_.file("x")}), 1);
  EXPECT_EQ(run({"--help"}), 0);
}

TEST_F(StoreCliTest, LargeTransferDrawsAProgressBar) {
  test::write_file(dir_.file("big"), std::string(9 << 20, 'b'));
  ASSERT_EQ(run({"put", dir_.file("big"), "big"}, /*progress=*/true), 0) << err_.str();
  EXPECT_NE(err_.str().find("100%"), std::string::npos) << err_.str();
  EXPECT_NE(err_.str().find("MiB/s"), std::string::npos);
  ASSERT_EQ(run({"put", dir_.file("big"), "big"}, /*progress=*/false), 0);
  EXPECT_EQ(err_.str(), "");
}

}  // namespace
}  // namespace clupy
