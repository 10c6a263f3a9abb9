// The store's link to the cluster that needs no master: the environment a server gives its
// workers, and `clupy store`'s flags (with a real redis-server behind --redis-url).
#include "store/cluster_link.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <sstream>

#include "redis_server.hpp"
#include "store/cli.hpp"

namespace clupy {
namespace {

// Sets environment variables for one test and restores them after it.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (const auto& [name, value] : vars) {
      const char* old = ::getenv(name);
      saved_.emplace_back(name, old != nullptr ? std::optional<std::string>(old) : std::nullopt);
      if (value != nullptr)
        ::setenv(name, value, 1);
      else
        ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(StoreEnvironmentTest, WhatAServerSetsIsWhatTheWorkerReads) {
  StoreOptions options;
  options.redis_url = "redis://:secret@10.1.2.3:6390/4";
  options.key_prefix = "cluster-b:";
  options.chunk_size = 65536;
  std::vector<std::string> env = detail::store_environment(options);
  ASSERT_EQ(env.size(), 3u);
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& entry : env)
    pairs.emplace_back(entry.substr(0, entry.find('=')), entry.substr(entry.find('=') + 1));
  ScopedEnv scoped({{pairs[0].first.c_str(), pairs[0].second.c_str()},
                    {pairs[1].first.c_str(), pairs[1].second.c_str()},
                    {pairs[2].first.c_str(), pairs[2].second.c_str()}});
  std::optional<StoreOptions> read = detail::store_options_from_env();
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->redis_url, options.redis_url);
  EXPECT_EQ(read->key_prefix, options.key_prefix);
  EXPECT_EQ(read->chunk_size, options.chunk_size);
  EXPECT_TRUE(read->verify_reads);
}

TEST(StoreEnvironmentTest, NoUrlMeansNoStore) {
  ScopedEnv scoped({{"CLUPY_STORE_URL", nullptr}, {"CLUPY_STORE_PREFIX", "p:"}});
  EXPECT_FALSE(detail::store_options_from_env().has_value());
  ScopedEnv empty({{"CLUPY_STORE_URL", ""}});
  EXPECT_FALSE(detail::store_options_from_env().has_value());
}

TEST(StoreEnvironmentTest, MissingPrefixAndChunkSizeKeepTheDefaults) {
  ScopedEnv scoped({{"CLUPY_STORE_URL", "redis://127.0.0.1:1/0"},
                    {"CLUPY_STORE_PREFIX", nullptr},
                    {"CLUPY_STORE_CHUNK_SIZE", nullptr}});
  std::optional<StoreOptions> read = detail::store_options_from_env();
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->key_prefix, StoreOptions{}.key_prefix);
  EXPECT_EQ(read->chunk_size, StoreOptions{}.chunk_size);
}

TEST(StoreEnvironmentTest, MalformedChunkSizeIsAnErrorNamingTheVariable) {
  ScopedEnv scoped(
      {{"CLUPY_STORE_URL", "redis://127.0.0.1:1/0"}, {"CLUPY_STORE_CHUNK_SIZE", "1MiB"}});
  try {
    detail::store_options_from_env();
    FAIL() << "no error";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("CLUPY_STORE_CHUNK_SIZE"), std::string::npos) << e.what();
  }
}

TEST(StoreCliTargetTest, FlagsMayComeAnywhereInBothForms) {
  store::CliTarget target;
  ASSERT_FALSE(store::parse_cli_target({"put", "--master-url", "clupy://m:7878", "a.csv",
                                        "--token-file=/t", "data/a.csv", "--config", "c.yaml"},
                                       target));
  EXPECT_EQ(target.command, (std::vector<std::string>{"put", "a.csv", "data/a.csv"}));
  EXPECT_EQ(target.master.master_url, "clupy://m:7878");
  EXPECT_EQ(target.master.token_file, "/t");
  EXPECT_EQ(target.master.config_file, "c.yaml");
  EXPECT_TRUE(target.redis_url.empty());
}

TEST(StoreCliTargetTest, DoubleDashLetsANameStartWithDashes) {
  store::CliTarget target;
  ASSERT_FALSE(store::parse_cli_target({"rm", "--", "--odd-name"}, target));
  EXPECT_EQ(target.command, (std::vector<std::string>{"rm", "--odd-name"}));
}

TEST(StoreCliTargetTest, BadFlagsAreUsageErrors) {
  store::CliTarget target;
  EXPECT_EQ(store::parse_cli_target({"ls", "--master"}, target).value_or(""),
            "--master needs a value");
  EXPECT_EQ(store::parse_cli_target({"ls", "--colour", "x"}, target).value_or(""),
            "unknown option --colour");
  EXPECT_NE(store::parse_cli_target({"ls", "--redis-url", "redis://h", "--master-url", "clupy://m"},
                                    target)
                .value_or("")
                .find("not both"),
            std::string::npos);
  EXPECT_NE(store::parse_cli_target({"ls", "--key-prefix", "p:"}, target)
                .value_or("")
                .find("--redis-url"),
            std::string::npos);
}

class StoreCliFlagsTest : public test::SharedRedisTest {
 protected:
  // Runs the CLI; the master, if asked, answers `master_answer` and records what it was asked.
  int run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    return store::run_cli_with_flags(
        std::move(args),
        [this](const ConnectOptions& asked) {
          asked_ = asked;
          ++master_asked_;
          return master_answer_;
        },
        out_, err_, false);
  }

  test::TempDir dir_;
  std::ostringstream out_, err_;
  std::optional<StoreOptions> master_answer_;
  ConnectOptions asked_;
  int master_asked_ = 0;
};

TEST_F(StoreCliFlagsTest, RedisUrlAndPrefixReachTheStoreWithoutAskingAMaster) {
  test::write_file(dir_.file("a.txt"), "hello");
  const std::string prefix = "cli-flags:" + test::test_name() + ":";
  ASSERT_EQ(run({"put", dir_.file("a.txt"), "a.txt", "--redis-url", server_->url(), "--key-prefix",
                 prefix}),
            0)
      << err_.str();
  EXPECT_EQ(master_asked_, 0);
  StoreOptions direct = server_->options("unused");
  direct.key_prefix = prefix;
  EXPECT_EQ(Store(direct).stat("a.txt").size, 5u);
}

TEST_F(StoreCliFlagsTest, MasterUrlAndTokenFileAreWhatTheMasterIsAskedWith) {
  master_answer_ = server_->options(test::test_name());
  ASSERT_EQ(run({"ls", "--master-url", "clupy://127.0.0.1:9", "--token-file", "/tok"}), 0)
      << err_.str();
  EXPECT_EQ(master_asked_, 1);
  EXPECT_EQ(asked_.master_url, "clupy://127.0.0.1:9");
  EXPECT_EQ(asked_.token_file, "/tok");
}

TEST_F(StoreCliFlagsTest, AMasterWithoutAStoreIsAClearError) {
  master_answer_.reset();
  EXPECT_EQ(run({"ls", "--master-url", "clupy://127.0.0.1:9"}), 1);
  EXPECT_NE(err_.str().find("the master at clupy://127.0.0.1:9 has no file store"),
            std::string::npos)
      << err_.str();
}

TEST_F(StoreCliFlagsTest, UsageErrorsNeverAskTheMaster) {
  EXPECT_EQ(run({"frobnicate", "--master-url", "clupy://127.0.0.1:9"}), 2);
  EXPECT_EQ(run({"get", "only-one-arg"}), 2);
  EXPECT_EQ(run({"--help"}), 0);
  EXPECT_NE(out_.str().find("--master-url"), std::string::npos) << out_.str();
  EXPECT_EQ(master_asked_, 0);
}

TEST_F(StoreCliFlagsTest, InsideATaskTheServersEnvironmentNamesTheStore) {
  const StoreOptions options = server_->options(test::test_name());
  ScopedEnv scoped({{"CLUPY_STORE_URL", options.redis_url.c_str()},
                    {"CLUPY_STORE_PREFIX", options.key_prefix.c_str()},
                    {"CLUPY_STORE_CHUNK_SIZE", nullptr}});
  Store(options).write_csv("t.csv", {{"a"}});
  ASSERT_EQ(run({"ls"}), 0) << err_.str();
  EXPECT_NE(out_.str().find("t.csv"), std::string::npos) << out_.str();
  EXPECT_EQ(master_asked_, 0);
}

}  // namespace
}  // namespace clupy
