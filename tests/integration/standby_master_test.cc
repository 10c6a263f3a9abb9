// Standby masters for real: a ZooKeeper server, two `clupy --master` processes with the same
// `coordination:` section, a server and a client that only know the zk:// URL.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <filesystem>

#include "cluster_fixture.hpp"
#include "zk_server.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

class StandbyMasterTest : public ClusterFixture {
 protected:
  void SetUp() override {
    zk_.start();
    ASSERT_TRUE(zk_.wait_ready(seconds(60))) << zk_.log();
    write_file(token_file(), "standby-test-token\n");
    ::chmod(token_file().c_str(), 0600);
  }

  // A master candidate in its own directory, with the shared token and coordination section.
  ChildProcess start_candidate(const std::string& name) {
    const std::string dir = dir_.file(name);
    std::filesystem::create_directories(dir);
    write_file(dir + "/clupy.master.yaml", "port: 0\nport_file: " + dir +
                                               "/port\ntoken_file: " + token_file() +
                                               "\ncoordination:\n  connect: " + zk_.hosts() +
                                               "/standby-test\n  session_timeout: 3s\n");
    return ChildProcess(
        {{CLUPY_BINARY, "--master", "--log-level", "debug"}, {}, dir, dir + "/master.log"});
  }
  std::string url_of(const std::string& name) {
    return "clupy://127.0.0.1:" + read_file(dir_.file(name + "/port"))
                                      .substr(0, read_file(dir_.file(name + "/port")).find('\n'));
  }
  bool logged(const std::string& name, const std::string& text) {
    return read_file(dir_.file(name + "/master.log")).find(text) != std::string::npos;
  }
  // The fencing token the master logged when it was elected; "" before.
  std::string elected_token(const std::string& name) {
    const std::string log = read_file(dir_.file(name + "/master.log"));
    const std::string mark = "elected master (fencing token ";
    const auto at = log.find(mark);
    if (at == std::string::npos) return "";
    const auto start = at + mark.size();
    return log.substr(start, log.find(')', start) - start);
  }
  // What tasks dispatched by the elected master report of themselves (scenario whoami).
  std::string whoami_line(const std::string& out) {
    ChildProcess client({{TASK_PROGRAM, "whoami", "20"},
                         {{"CLUPY_MASTER_URL", zk_url()}, {"CLUPY_TOKEN_FILE", token_file()}},
                         dir_.path(),
                         dir_.file(out)});
    EXPECT_TRUE(client.wait(seconds(120))) << client.log();
    const std::string log = client.log();
    const auto at = log.find("WHOAMI ");
    return at == std::string::npos ? log : log.substr(at, log.find('\n', at) - at);
  }
  std::set<std::string> servers_at(const std::string& url) {
    std::set<std::string> ids;
    try {
      ConnectOptions options;
      options.master_url = url;
      options.token_file = token_file();
      options.config_file = dir_.file("empty.yaml");
      write_file(options.config_file, "");
      for (const auto& s : cluster_status(options).servers) ids.insert(s.server_id);
    } catch (const std::exception&) {
    }
    return ids;
  }
  std::string zk_url() const { return "zk://" + zk_.hosts() + "/standby-test"; }

  ZkServer zk_;
};

TEST_F(StandbyMasterTest, OneMasterLeadsTheOtherTakesOverAndTheServerFollows) {
  ChildProcess a = start_candidate("a");
  ASSERT_TRUE(wait_until([&] { return logged("a", "elected master"); }, seconds(60),
                         "the first master to be elected"))
      << read_file(dir_.file("a/master.log"));
  ChildProcess b = start_candidate("b");
  ASSERT_TRUE(wait_until([&] { return logged("b", "standby master: waiting"); }, seconds(60),
                         "the second to wait"));
  EXPECT_FALSE(logged("b", "elected master"));
  EXPECT_FALSE(std::filesystem::exists(dir_.file("b/port"))) << "a standby must not listen";

  ChildProcess server({{CLUPY_BINARY, "--serve", "--master-url", zk_url(), "--token-file",
                        token_file(), "--server-id", "follower", "--registration-interval", "200ms",
                        "--failure-retry-interval", "200ms", "--log-level", "debug"},
                       {},
                       dir_.path(),
                       dir_.file("follower.log")});
  ASSERT_TRUE(
      wait_until([&] { return servers_at(url_of("a")) == std::set<std::string>{"follower"}; },
                 seconds(30), "the server to register with the elected master"))
      << read_file(dir_.file("follower.log")) << read_file(dir_.file("a/master.log"));

  // A client that knows only the zk:// URL runs tasks on the elected master's cluster.
  ChildProcess client({{TASK_PROGRAM, "types"},
                       {{"CLUPY_MASTER_URL", zk_url()}, {"CLUPY_TOKEN_FILE", token_file()}},
                       dir_.path(),
                       dir_.file("client.out")});
  ASSERT_TRUE(client.wait(seconds(120)));
  EXPECT_NE(client.log().find("TYPES ok=4"), std::string::npos) << client.log();
  // Each task knows its server and the token of the master that dispatched it.
  const std::string token_a = elected_token("a");
  ASSERT_FALSE(token_a.empty());
  EXPECT_EQ(whoami_line("whoami-a.out"),
            "WHOAMI outside=none ids=20 servers=follower tokens=" + token_a);

  // A client in the middle of a wait_all when the leader dies: its unfinished tasks go to the
  // new master and every future completes, none twice.
  ChildProcess busy({{TASK_PROGRAM, "long", "2000", "5"},
                     {{"CLUPY_MASTER_URL", zk_url()}, {"CLUPY_TOKEN_FILE", token_file()}},
                     dir_.path(),
                     dir_.file("busy.out")});
  ASSERT_TRUE(wait_until([&] { return busy.log().find("PROGRESS 1") != std::string::npos; },
                         seconds(60), "the client to make progress"));
  a.signal(SIGKILL);
  a.wait(seconds(10));
  ASSERT_TRUE(wait_until([&] { return logged("b", "elected master"); }, seconds(60),
                         "the standby to take over"))
      << read_file(dir_.file("b/master.log"));
  EXPECT_TRUE(
      wait_until([&] { return servers_at(url_of("b")) == std::set<std::string>{"follower"}; },
                 seconds(60), "the server to re-register with the new master"));
  ASSERT_TRUE(busy.wait(seconds(120))) << busy.log();
  EXPECT_NE(busy.log().find("DONE ok=2000 failed=0 callbacks=2000"), std::string::npos)
      << busy.log();
  EXPECT_NE(busy.log().find("resubmitted"), std::string::npos) << busy.log();
  // The program's thread read the master's address throughout and saw it change.
  EXPECT_NE(busy.log().find("MASTERS seen=2"), std::string::npos) << busy.log();
  // Tasks dispatched by the new master carry its token, a larger one.
  const std::string token_b = elected_token("b");
  ASSERT_FALSE(token_b.empty());
  EXPECT_GT(std::stoll(token_b), std::stoll(token_a));
  EXPECT_EQ(whoami_line("whoami-b.out"),
            "WHOAMI outside=none ids=20 servers=follower tokens=" + token_b);
}

// A leader that loses its ZooKeeper session stops dispatching and exits with status 75
// (docs/operations.md), so that its supervisor restarts it as a standby: it must not hang
// after stopping, its wait for SIGTERM still pending.
TEST_F(StandbyMasterTest, LeaderThatLosesZooKeeperStopsAndExitsWith75) {
  ChildProcess a = start_candidate("a");
  ASSERT_TRUE(wait_until([&] { return logged("a", "elected master"); }, seconds(60),
                         "the master to be elected"))
      << read_file(dir_.file("a/master.log"));
  zk_.stop();
  const auto status = a.wait(seconds(30));
  ASSERT_TRUE(status.has_value()) << "the deposed master is still running 30 s later\n"
                                  << read_file(dir_.file("a/master.log"));
  ASSERT_TRUE(WIFEXITED(*status)) << "status " << *status;
  EXPECT_EQ(WEXITSTATUS(*status), 75) << read_file(dir_.file("a/master.log"));
  EXPECT_TRUE(logged("a", "it stops dispatching"));
  EXPECT_TRUE(logged("a", "master stopped (leadership lost)"));
}

// Every CLI command that takes --master-url finds the elected master through zk://, as servers
// and programs do: info, top, store and the service commands (which share one dial path).
TEST_F(StandbyMasterTest, CommandsFindTheElectedMasterThroughZooKeeper) {
  const std::string dir = dir_.file("m");
  std::filesystem::create_directories(dir);
  write_file(dir + "/clupy.master.yaml",
             "port: 0\nport_file: " + dir + "/port\ntoken_file: " + token_file() +
                 "\nstore:\n  redis: embedded\ncoordination:\n  connect: " + zk_.hosts() +
                 "/standby-test\n  session_timeout: 3s\n");
  ChildProcess master(
      {{CLUPY_BINARY, "--master", "--log-level", "debug"}, {}, dir, dir + "/master.log"});
  ASSERT_TRUE(wait_until([&] { return logged("m", "elected master"); }, seconds(60),
                         "the master to be elected"))
      << read_file(dir + "/master.log");
  ChildProcess server({{CLUPY_BINARY, "--serve", "--master-url", zk_url(), "--token-file",
                        token_file(), "--server-id", "zk-follower", "--capacity", "3",
                        "--registration-interval", "200ms", "--failure-retry-interval", "200ms"},
                       {},
                       dir_.path(),
                       dir_.file("zk-follower.log")});
  ASSERT_TRUE(
      wait_until([&] { return servers_at(url_of("m")) == std::set<std::string>{"zk-follower"}; },
                 seconds(30), "the server to register"));
  const std::vector<std::string> where = {"--master-url", zk_url(), "--token-file", token_file()};
  auto cli = [&](std::vector<std::string> args, std::string& out) {
    args.insert(args.end(), where.begin(), where.end());
    return run_cli(args, out);
  };
  std::string out;
  ASSERT_EQ(cli({"info"}, out), 0) << out;
  EXPECT_NE(out.find("master " + url_of("m")), std::string::npos) << out;
  EXPECT_NE(out.find("zk-follower"), std::string::npos) << out;

  ASSERT_EQ(cli({"top", "--once"}, out), 0) << out;
  EXPECT_NE(out.find("clupy top - master " + url_of("m")), std::string::npos) << out;
  EXPECT_NE(out.find("slots 3, busy 0"), std::string::npos) << out;
  EXPECT_NE(out.find("zk-follower"), std::string::npos) << out;

  write_file(dir_.file("hello.csv"), "x,y\n1,2\n");
  ASSERT_EQ(cli({"store", "put", dir_.file("hello.csv"), "zk/hello.csv"}, out), 0) << out;
  ASSERT_EQ(cli({"store", "ls", "zk/"}, out), 0) << out;
  EXPECT_NE(out.find("zk/hello.csv"), std::string::npos) << out;
  ASSERT_EQ(cli({"store", "get", "zk/hello.csv", dir_.file("back.csv")}, out), 0) << out;
  EXPECT_EQ(read_file(dir_.file("back.csv")), "x,y\n1,2\n");

  ASSERT_EQ(cli({"services", "--json"}, out), 0) << out;
  EXPECT_EQ(out.find("unknown scheme"), std::string::npos) << out;

  // With no master elected, the commands say so within connect_timeout instead of hanging.
  master.signal(SIGKILL);
  master.wait(seconds(10));
  write_file(dir_.file("short.yaml"), "connect_timeout: 2s\n");
  EXPECT_TRUE(wait_until(
      [&] {
        return cli({"info", "--config", dir_.file("short.yaml")}, out) == 1;
      },
      seconds(30), "info to fail once the leader is gone"));
  EXPECT_NE(out.find("clupy: "), std::string::npos) << out;
}

}  // namespace
}  // namespace clupy::test
