// The file store inside a real cluster: a master configured with `store:`, servers whose tasks
// use clupy::cluster_store(), and `clupy store ... --master-url`. Redis is a real redis-server.
#include <sys/wait.h>

#include "cluster_fixture.hpp"
#include "store/redis_server.hpp"

namespace clupy::test {
namespace {

class StoreClusterTest : public ClusterFixture {
 protected:
  // A master whose store is `redis_` under a prefix of this test's own.
  void start_master_with_store() {
    redis_.emplace();
    prefix_ = "it:" + test_name() + ":";
    write_file(dir_.file("master.yaml"), "store:\n  redis: " + redis_->url() +
                                             "\n  key_prefix: \"" + prefix_ +
                                             "\"\n  chunk_size: 64KiB\n");
    start_master({"--config", dir_.file("master.yaml")});
  }

  // The same store, reached directly, to check what the cluster did.
  Store direct_store() const {
    StoreOptions options;
    options.redis_url = redis_->url();
    options.key_prefix = prefix_;
    return Store(options);
  }

  std::string run_program(const std::string& name, std::vector<std::string> args) {
    return run_client_program(STORE_TASK_PROGRAM, name, std::move(args));
  }

  int store_cli(std::vector<std::string> args, std::string& output) {
    args.insert(args.begin(), "store");
    args.insert(args.end(), {"--master-url", master_url(), "--token-file", token_file()});
    return run_cli(std::move(args), output);
  }

  std::optional<RedisServer> redis_;
  std::string prefix_;
};

TEST_F(StoreClusterTest, TasksOnTwoServersShareAFileThroughTheStore) {
  start_master_with_store();
  start_server("s1", {"--capacity", "1", "--label", "role=writer"});
  start_server("s2", {"--capacity", "1", "--label", "role=reader"});
  ASSERT_TRUE(servers_become({"s1", "s2"}));

  const std::string out = run_program("share", {"share", "shared/data.txt"});
  // "WROTE s1 <size>:<sum>", "READ s2 <size>:<sum> written on s1", the program alike.
  const std::string wrote = line_after(out, "WROTE ");
  ASSERT_EQ(wrote.rfind("s1 ", 0), 0u) << out;
  const std::string fingerprint = wrote.substr(3);
  EXPECT_EQ(line_after(out, "READ "), "s2 " + fingerprint + " written on s1") << out;
  EXPECT_EQ(line_after(out, "MAIN "), "client " + fingerprint + " written on s1") << out;

  // It is where the master's configuration says: that Redis, that prefix, 64 KiB chunks.
  Store store = direct_store();
  const FileStat stat = store.stat("shared/data.txt");
  EXPECT_EQ(std::to_string(stat.size) + ":", fingerprint.substr(0, fingerprint.find(':') + 1));
  EXPECT_GT(stat.size, 256u * 1024);
}

TEST_F(StoreClusterTest, WithoutAStoreSectionTasksAndProgramsGetANotConfiguredError) {
  start_master();
  start_server("s1", {"--capacity", "1"});
  ASSERT_TRUE(servers_become({"s1"}));
  const std::string out = run_program("no-store", {"no-store"});
  EXPECT_NE(line_after(out, "TASK s1 NOT_CONFIGURED ").find("clupy.master.yaml"), std::string::npos)
      << out;
  EXPECT_NE(line_after(out, "MAIN client NOT_CONFIGURED ").find("clupy.master.yaml"),
            std::string::npos)
      << out;
}

TEST_F(StoreClusterTest, CliLearnsTheStoreFromTheMaster) {
  start_master_with_store();
  write_file(dir_.file("iris.csv"), "sepal,petal\n5.1,1.4\n4.9,1.4\n");
  std::string output;
  ASSERT_EQ(store_cli({"put", dir_.file("iris.csv"), "datasets/iris.csv"}, output), 0) << output;
  EXPECT_NE(output.find("stored datasets/iris.csv (28 bytes, text/csv"), std::string::npos)
      << output;
  ASSERT_EQ(store_cli({"ls", "datasets/"}, output), 0) << output;
  EXPECT_NE(output.find("datasets/iris.csv"), std::string::npos) << output;
  ASSERT_EQ(store_cli({"pin", "datasets/iris.csv"}, output), 0) << output;
  ASSERT_EQ(store_cli({"stat", "datasets/iris.csv"}, output), 0) << output;
  EXPECT_NE(output.find("pinned: yes"), std::string::npos) << output;
  ASSERT_EQ(store_cli({"get", "datasets/iris.csv", dir_.file("copy.csv")}, output), 0) << output;
  EXPECT_EQ(read_file(dir_.file("copy.csv")), read_file(dir_.file("iris.csv")));
  // Under the master's prefix in the master's Redis.
  EXPECT_TRUE(direct_store().stat("datasets/iris.csv").pinned);
  ASSERT_EQ(store_cli({"rm", "datasets/iris.csv"}, output), 0) << output;
  EXPECT_FALSE(direct_store().exists("datasets/iris.csv"));
}

TEST_F(StoreClusterTest, CliSaysWhenTheMasterHasNoStore) {
  start_master();
  std::string output;
  EXPECT_EQ(store_cli({"ls"}, output), 1) << output;
  EXPECT_NE(output.find("has no file store"), std::string::npos) << output;
}

}  // namespace
}  // namespace clupy::test
