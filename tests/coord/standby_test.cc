// The standby master against a real ZooKeeper: MasterElection (src/master/standby) in separate
// processes (standby_child, STANDBY_CHILD) and in this one, and MasterLocator
// (src/common/master_locator) following the leader they publish.
#include "master/standby.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <clupy/coord.hpp>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "clupy/errors.hpp"
#include "common/master_locator.hpp"
#include "support/process.hpp"
#include "zk_server.hpp"

namespace clupy {
namespace {

using namespace std::chrono_literals;
using common::MasterLocation;
using common::MasterLocator;
using master::MasterElection;
using test::ChildProcess;
using test::TempDir;
using test::wait_until;
using test::ZkServer;

constexpr int kChildSessionMs = 3000;

// Each test has its own chroot.
std::string connect_string() {
  auto* info = testing::UnitTest::GetInstance()->current_test_info();
  return test::shared_zk_server().hosts() + "/standby-" + info->test_suite_name() + "-" +
         info->name();
}

common::CoordinationSection section(std::chrono::milliseconds session_timeout = 3s) {
  common::CoordinationSection s;
  s.enabled = true;
  s.connect = connect_string();
  s.session_timeout = session_timeout;
  s.connect_timeout = 30s;
  return s;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A candidate process and its event log (see standby_child.cc).
struct Candidate {
  std::string name;
  int port = 0;
  std::string log_path;
  ChildProcess process;

  struct Event {
    std::string what;
    std::int64_t when;
    std::string detail;
  };
  std::vector<Event> events() const {
    std::vector<Event> out;
    std::ifstream in(log_path);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      Event e;
      if (fields >> e.what >> e.when) {
        std::getline(fields >> std::ws, e.detail);
        out.push_back(e);
      }
    }
    return out;
  }
  std::optional<std::int64_t> first(const std::string& what) const {
    for (const auto& e : events())
      if (e.what == what) return e.when;
    return std::nullopt;
  }
  std::vector<std::int64_t> all(const std::string& what) const {
    std::vector<std::int64_t> out;
    for (const auto& e : events())
      if (e.what == what) out.push_back(e.when);
    return out;
  }
  std::string describe() const {
    return name + " (pid " + std::to_string(process.pid()) + ") events:\n" +
           test::read_file(log_path) + "output:\n" + process.log();
  }
};

std::unique_ptr<Candidate> start_candidate(const TempDir& dir, const std::string& name) {
  auto c = std::make_unique<Candidate>();
  c->name = name;
  c->port = test::free_loopback_port();
  c->log_path = dir.file(name + ".events");
  ChildProcess::Options o;
  o.argv = {STANDBY_CHILD, connect_string(),        "/clupy/master",
            name,          std::to_string(c->port), std::to_string(kChildSessionMs),
            c->log_path};
  o.log_path = dir.file(name + ".out");
  c->process = ChildProcess(std::move(o));
  return c;
}

std::string url_of(const Candidate& c) { return "clupy://127.0.0.1:" + std::to_string(c.port); }

// Records every change the locator reports.
struct ChangeRecorder {
  std::mutex mu;
  std::vector<std::optional<MasterLocation>> seen;
  void operator()(const std::optional<MasterLocation>& location) {
    std::lock_guard lock(mu);
    seen.push_back(location);
  }
  bool saw_url(const std::string& url) {
    std::lock_guard lock(mu);
    for (const auto& l : seen)
      if (l && l->url == url) return true;
    return false;
  }
};

// Two candidates start; exactly one is elected and publishes. Returns {leader, standby}.
std::pair<Candidate*, Candidate*> elect_one(Candidate& a, Candidate& b, MasterLocator& locator) {
  MasterLocation location = locator.resolve(60s);
  Candidate* leader = location.url == url_of(a) ? &a : &b;
  Candidate* standby = leader == &a ? &b : &a;
  EXPECT_EQ(location.url, url_of(*leader)) << a.describe() << b.describe();
  EXPECT_TRUE(
      wait_until([&] { return standby->first("joined").has_value(); }, 60s, "the standby to join"))
      << standby->describe();
  EXPECT_TRUE(leader->first("elected").has_value()) << leader->describe();
  EXPECT_FALSE(standby->first("elected").has_value()) << standby->describe();
  EXPECT_GT(location.fencing_token, 0);
  return {leader, standby};
}

// ---- the zk:// URL and the published record ----

TEST(ZkUrlTest, ParsesHostsChrootAndElectionPath) {
  auto url = common::parse_zk_url("zk://zk1:2181,zk2/clupy?election_path=/ha/master");
  EXPECT_EQ(url.connect, "zk1:2181,zk2:2181/clupy");
  EXPECT_EQ(url.election_path, "/ha/master");
  EXPECT_EQ(url.to_string(), "zk://zk1:2181,zk2:2181/clupy?election_path=/ha/master");
  auto plain = common::parse_zk_url("zk://127.0.0.1:2181");
  EXPECT_EQ(plain.connect, "127.0.0.1:2181");
  EXPECT_EQ(plain.election_path, "/clupy/master");
  EXPECT_EQ(plain.to_string(), "zk://127.0.0.1:2181");
  EXPECT_TRUE(common::is_zk_url("zk://h"));
  EXPECT_FALSE(common::is_zk_url("clupy://h:1"));
}

TEST(ZkUrlTest, RejectsMalformedUrlsNamingThem) {
  for (const char* bad :
       {"zk://", "zk:///chroot", "zk://h:0", "zk://h:99999", "zk://h:x", "zk://h/a//b", "zk://h/a/",
        "zk://h?path=/x", "zk://h?election_path=x", "clupy://h:1", "zk://h,,g"}) {
    try {
      common::parse_zk_url(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

TEST(MasterLocationTest, EncodingRoundTripsAndJunkIsNoLocation) {
  MasterLocation location{"clupy://10.0.0.5:7878", 4294967302, "m1 pid 12"};
  EXPECT_EQ(common::decode_master_location(common::encode_master_location(location)), location);
  EXPECT_EQ(common::decode_master_location("token=3\n"), std::nullopt);
  EXPECT_EQ(common::decode_master_location("url=ftp://x\n"), std::nullopt);
  auto newer = common::decode_master_location("url=clupy://h:1\nzone=eu\ntoken=9\n");
  ASSERT_TRUE(newer.has_value());
  EXPECT_EQ(newer->fencing_token, 9);
}

TEST(MasterElectionTest, AdvertisedHostPrefersTheConfiguredNameThenTheBindAddress) {
  common::CoordinationSection s;
  EXPECT_EQ(MasterElection::advertised_host(s, "10.1.2.3"), "10.1.2.3");
  const std::string wildcard = MasterElection::advertised_host(s, "0.0.0.0");
  EXPECT_FALSE(wildcard.empty());
  EXPECT_NE(wildcard, "0.0.0.0");
  EXPECT_NE(MasterElection::advertised_host(s, "::"), "::");
  s.advertise = "master-a.example.net";
  EXPECT_EQ(MasterElection::advertised_host(s, "0.0.0.0"), "master-a.example.net");
}

// ---- the locator ----

TEST(MasterLocatorTest, NoPublishedMasterIsAConnectionErrorAfterTheTimeout) {
  MasterLocator locator("zk://" + connect_string());
  try {
    locator.resolve(1s);
    FAIL() << "resolved a master nobody published";
  } catch (const ConnectionError& e) {
    EXPECT_NE(std::string(e.what()).find("no master is elected"), std::string::npos) << e.what();
  }
  EXPECT_EQ(locator.current(), std::nullopt);
}

TEST(MasterLocatorTest, UnreachableZooKeeperIsAConnectionError) {
  MasterLocator locator("zk://127.0.0.1:" + std::to_string(test::free_loopback_port()));
  try {
    locator.resolve(1s);
    FAIL() << "resolved a master without ZooKeeper";
  } catch (const ConnectionError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot reach ZooKeeper"), std::string::npos) << e.what();
  }
}

// ---- elections in this process ----

TEST(MasterElectionTest, StopHandsOverAtOnceWithAHigherToken) {
  auto config = section(10s);  // a handover that waited for expiry would take 10 s
  MasterElection first(config, "first", {});
  first.start();
  ASSERT_TRUE(first.wait_elected(30s));
  EXPECT_TRUE(first.is_leader());
  ASSERT_TRUE(first.publish("127.0.0.1", 1001));

  MasterElection second(config, "second", {});
  second.start();
  EXPECT_EQ(second.state(), MasterElection::State::kStandby);
  EXPECT_FALSE(second.is_leader());
  EXPECT_FALSE(second.publish("127.0.0.1", 1002)) << "a standby published its address";

  MasterLocator locator("zk://" + config.connect);
  EXPECT_EQ(locator.resolve(30s).url, "clupy://127.0.0.1:1001");
  ChangeRecorder changes;
  locator.subscribe([&](const std::optional<MasterLocation>& l) { changes(l); });

  const auto stopped_at = std::chrono::steady_clock::now();
  first.stop();
  EXPECT_EQ(first.state(), MasterElection::State::kStopped);
  EXPECT_FALSE(first.is_leader());
  ASSERT_TRUE(second.wait_elected(30s));
  const auto handover = std::chrono::steady_clock::now() - stopped_at;
  std::cout << "[ measured ] stop() to the standby's election: "
            << std::chrono::duration_cast<std::chrono::milliseconds>(handover).count() << " ms\n";
  EXPECT_LT(handover, 9s) << "the standby waited for a session expiry";
  EXPECT_GT(second.fencing_token(), first.fencing_token());
  ASSERT_TRUE(second.publish("127.0.0.1", 1002));
  EXPECT_TRUE(wait_until([&] { return changes.saw_url("clupy://127.0.0.1:1002"); }, 30s,
                         "the change notification"));
  EXPECT_EQ(locator.resolve(1s).url, "clupy://127.0.0.1:1002");
  EXPECT_EQ(locator.current()->fencing_token, second.fencing_token());
}

TEST(MasterElectionTest, AddressLeftByAnotherWriterIsReplaced) {
  auto config = section();
  {
    coord::Session other(common::session_options(config));
    coord::WatchedNode(other, "/clupy/master/leader").set("url=clupy://127.0.0.1:9\n");
  }
  MasterElection election(config, "m", {});
  election.start();
  ASSERT_TRUE(election.wait_elected(30s));
  ASSERT_TRUE(election.publish("::1", 1003));
  MasterLocator locator("zk://" + config.connect);
  EXPECT_TRUE(wait_until(
      [&] { return locator.current() && locator.current()->url == "clupy://[::1]:1003"; }, 30s,
      "the locator to see the new address"));
}

TEST(MasterElectionTest, UnreachableZooKeeperFailsStartWithConnectionError) {
  auto config = section();
  config.connect = "127.0.0.1:" + std::to_string(test::free_loopback_port());
  config.connect_timeout = 1s;
  MasterElection election(config, "m", {});
  EXPECT_THROW(election.start(), ConnectionError);
  EXPECT_FALSE(election.is_leader());
}

// ---- failover between processes ----

TEST(StandbyFailoverTest, KilledLeaderIsReplacedAndTheLocatorFollows) {
  TempDir dir;
  auto a = start_candidate(dir, "a");
  auto b = start_candidate(dir, "b");
  MasterLocator locator("zk://" + connect_string());
  auto [leader, standby] = elect_one(*a, *b, locator);
  ASSERT_NE(leader, nullptr);
  ChangeRecorder changes;
  locator.subscribe([&](const std::optional<MasterLocation>& l) { changes(l); });
  const std::int64_t old_token = locator.current()->fencing_token;

  const std::int64_t killed_at = now_ns();
  leader->process.signal(SIGKILL);
  ASSERT_TRUE(wait_until([&] { return standby->first("published").has_value(); },
                         std::chrono::milliseconds(kChildSessionMs) + 30s,
                         "the standby to take over"))
      << standby->describe();
  const double takeover_ms = static_cast<double>(*standby->first("elected") - killed_at) / 1e6;
  std::cout << "[ measured ] SIGKILL of the leader to the standby's election: " << takeover_ms
            << " ms (session timeout " << kChildSessionMs << " ms)\n";
  EXPECT_TRUE(wait_until([&] { return changes.saw_url(url_of(*standby)); }, 30s,
                         "the locator's change notification"));
  const MasterLocation now = locator.resolve(10s);
  EXPECT_EQ(now.url, url_of(*standby));
  EXPECT_GT(now.fencing_token, old_token);
  // The standby's session is still healthy: no loss on its side.
  EXPECT_FALSE(standby->first("lost").has_value()) << standby->describe();
}

// The leader is frozen past its session timeout. The standby is elected meanwhile; when the old
// leader runs again it reports the loss, and it never acted after the new leader was elected.
TEST(StandbyFailoverTest, PausedLeaderLearnsItLostAndNeverOverlapsTheNewOne) {
  TempDir dir;
  auto a = start_candidate(dir, "a");
  auto b = start_candidate(dir, "b");
  MasterLocator locator("zk://" + connect_string());
  auto [leader, standby] = elect_one(*a, *b, locator);
  ASSERT_NE(leader, nullptr);
  ASSERT_TRUE(wait_until([&] { return !leader->all("act").empty(); }, 30s, "the leader to act"))
      << leader->describe();

  leader->process.signal(SIGSTOP);
  ASSERT_TRUE(wait_until([&] { return standby->first("published").has_value(); },
                         std::chrono::milliseconds(kChildSessionMs) + 60s,
                         "the standby to take over from the frozen leader"))
      << standby->describe();
  EXPECT_TRUE(
      wait_until([&] { return locator.current() && locator.current()->url == url_of(*standby); },
                 30s, "the locator to follow"));
  ASSERT_TRUE(
      wait_until([&] { return !standby->all("act").empty(); }, 30s, "the new leader to act"));
  const std::int64_t resumed_at = now_ns();
  leader->process.signal(SIGCONT);

  ASSERT_TRUE(wait_until([&] { return leader->first("exit").has_value(); }, 60s,
                         "the old leader to report the loss and leave"))
      << leader->describe();
  const auto status = leader->process.wait(30s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << leader->describe();

  const std::int64_t elected = *standby->first("elected");
  const auto old_acts = leader->all("act");
  const auto new_acts = standby->all("act");
  ASSERT_FALSE(old_acts.empty());
  ASSERT_FALSE(new_acts.empty());
  EXPECT_LT(old_acts.back(), elected) << "the old leader acted after the new one was elected\n"
                                      << leader->describe() << standby->describe();
  EXPECT_LT(old_acts.back(), new_acts.front());
  EXPECT_GT(*leader->first("lost"), elected) << "the loss is reported when the process runs";
  std::string reason;
  for (const auto& e : leader->events())
    if (e.what == "lost") reason = e.detail;
  std::cout << "[ measured ] the old leader's last act to the new leader's election: "
            << static_cast<double>(elected - old_acts.back()) / 1e6
            << " ms; SIGCONT to its on_lost (" << reason
            << "): " << static_cast<double>(*leader->first("lost") - resumed_at) / 1e6 << " ms\n";
}

}  // namespace
}  // namespace clupy
