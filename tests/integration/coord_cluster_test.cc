// Coordination inside a real cluster: a master with a `coordination:` section on a real ZooKeeper
// server announces it; tasks on its servers (through their worker environment) and the program
// that submitted them (through the handshake) share locks and barriers.
#include "cluster_fixture.hpp"
#include "zk_server.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

class CoordClusterTest : public ClusterFixture {
 protected:
  void start_master_with_coordination() {
    zk_.start();
    ASSERT_TRUE(zk_.wait_ready(seconds(60))) << zk_.log();
    write_file(dir_.file("master.yaml"), "coordination:\n  connect: " + zk_.hosts() +
                                             "/coord-cluster\n  session_timeout: 10s\n");
    start_master({"--config", dir_.file("master.yaml")});
  }

  std::string run_program(const std::string& name, std::vector<std::string> args) {
    return run_client_program(COORD_TASK_PROGRAM, name, std::move(args));
  }

  ZkServer zk_;
};

TEST_F(CoordClusterTest, TasksOnTwoServersAndTheProgramShareALock) {
  start_master_with_coordination();
  start_server("s1", {"--capacity", "2"});
  start_server("s2", {"--capacity", "2"});
  ASSERT_TRUE(servers_become({"s1", "s2"}));
  const std::string out = run_program("lock", {"lock", "12", dir_.path()});
  // While the program held the lock, tasks reached it (two at least, on a ZooKeeper counter)
  // and none got through it.
  EXPECT_EQ(line_after(out, "WHILE_HELD "), "completed=0 reached=yes") << out;
  // Afterwards every task ran alone in its critical section: no update lost.
  EXPECT_NE(line_after(out, "LOCK ").find("ok=12 counter=12"), std::string::npos)
      << out << read_file(dir_.file("master.log"));
}

TEST_F(CoordClusterTest, TwoTasksAndTheProgramMeetAtADoubleBarrier) {
  start_master_with_coordination();
  start_server("s1", {"--capacity", "2"});
  ASSERT_TRUE(servers_become({"s1"}));
  const std::string out = run_program("barrier", {"barrier"});
  EXPECT_EQ(line_after(out, "BARRIER "), "entered=1 left=1 tasks_after_program=1") << out;
}

TEST_F(CoordClusterTest, WithoutACoordinationSectionProgramAndTasksAreToldSo) {
  start_master();
  start_server("s1");
  ASSERT_TRUE(servers_become({"s1"}));
  const std::string out = run_program("none", {"none"});
  EXPECT_EQ(line_after(out, "NONE "), "program=NOT_CONFIGURED task=NOT_CONFIGURED") << out;
}

}  // namespace
}  // namespace clupy::test
