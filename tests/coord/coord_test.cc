// Coordination recipes against a real ZooKeeper: one standalone server per test binary (a gtest
// Environment), plus private servers for the restart and ensemble tests. Multi-process tests run
// coord_child (COORD_CHILD) as the parties.
#include <signal.h>
#include <sys/wait.h>
#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <atomic>
#include <clupy/coord.hpp>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "support/process.hpp"
#include "zk_server.hpp"

namespace clupy::coord {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::ChildProcess;
using test::TempDir;
using test::wait_until;
using test::ZkServer;

#if defined(__SANITIZE_ADDRESS__)
// ASan slows the parties several times over; the property does not need the full count.
constexpr int kIncrementsPerProcess = 100;
#else
constexpr int kIncrementsPerProcess = 500;
#endif

// Each test works in its own chroot, so tests never see each other's nodes.
std::string chroot_connect() {
  auto* info = testing::UnitTest::GetInstance()->current_test_info();
  return test::shared_zk_server().hosts() + "/" + info->test_suite_name() + "-" + info->name();
}

SessionOptions options(std::chrono::milliseconds timeout = 4s) {
  SessionOptions o;
  o.connect = chroot_connect();
  o.session_timeout = timeout;
  o.connect_timeout = 30s;
  return o;
}

ChildProcess child(const std::vector<std::string>& args, const TempDir& dir,
                   const std::string& log) {
  ChildProcess::Options o;
  o.argv = {COORD_CHILD};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.log_path = dir.file(log);
  return ChildProcess(std::move(o));
}

// Waits for every child and expects each to exit 0; prints a failed child's log.
void expect_all_succeed(std::vector<ChildProcess>& children, std::chrono::milliseconds timeout) {
  for (auto& c : children) {
    auto status = c.wait(timeout);
    ASSERT_TRUE(status.has_value()) << "a party is stuck:\n" << c.log();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << "party exited with status " << *status << ":\n"
        << c.log();
  }
}

int count_prefix(const std::string& dir, const std::string& prefix) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind(prefix, 0) == 0) ++n;
  }
  return n;
}

// ---- Session ----

TEST(SessionTest, ConnectsAndCreatesItsChroot) {
  Session session(options());
  EXPECT_EQ(session.state(), SessionState::kConnected);
  EXPECT_NE(session.session_id(), 0);
  Value<std::string> value(session, "/a/b");
  value.set("hello");
  Session other(options());
  EXPECT_EQ(Value<std::string>(other, "/a/b").get(), "hello");
}

TEST(SessionTest, UnreachableServerFailsWithConnectionLoss) {
  SessionOptions o;
  o.connect = "127.0.0.1:" + std::to_string(test::free_loopback_port());
  o.connect_timeout = 1s;
  try {
    Session session(o);
    FAIL() << "connected to nothing";
  } catch (const CoordError& e) {
    EXPECT_EQ(e.kind(), CoordError::Kind::kConnectionLoss) << e.what();
  }
}

TEST(SessionTest, BadConnectStringIsRejected) {
  SessionOptions o;
  o.connect = "/only-a-chroot";
  try {
    Session session(o);
    FAIL() << "accepted a connect string without hosts";
  } catch (const CoordError& e) {
    EXPECT_EQ(e.kind(), CoordError::Kind::kBadArgument);
  }
}

TEST(SessionTest, DigestAuthKeepsOtherIdentitiesOut) {
  auto alice_options = options();
  alice_options.digest_auth = "alice:secret";
  Session alice(alice_options);
  Value<int> value(alice, "/private");
  value.set(42);

  auto bob_options = options();
  bob_options.digest_auth = "bob:secret";
  Session bob(bob_options);
  try {
    Value<int>(bob, "/private").get();
    FAIL() << "bob read alice's node";
  } catch (const CoordError& e) {
    EXPECT_EQ(e.kind(), CoordError::Kind::kAuthFailed);
    EXPECT_EQ(e.zk_error(), "ZNOAUTH");
  }
  Session alice_again(alice_options);
  EXPECT_EQ(Value<int>(alice_again, "/private").get(), 42);
}

// ---- Lock ----

TEST(LockTest, TryAcquireFailsWhileHeldAndSucceedsAfterRelease) {
  Session a(options());
  Session b(options());
  Lock lock_a(a, "/lock");
  Lock lock_b(b, "/lock");
  auto lease = lock_a.acquire();
  EXPECT_TRUE(lease.still_held());
  EXPECT_FALSE(lock_b.try_acquire().has_value());
  EXPECT_FALSE(lock_b.try_acquire_for(200ms).has_value());
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    auto second = lock_b.try_acquire_for(30s);
    got = second.has_value();
  });
  lease.release();
  EXPECT_FALSE(lease.still_held());
  waiter.join();
  EXPECT_TRUE(got);
  // A timed-out waiter leaves no node behind to block the queue.
  auto third = lock_a.try_acquire();
  EXPECT_TRUE(third.has_value());
}

TEST(LockTest, FencingTokensGrowWithEachAcquisition) {
  Session session(options());
  Lock lock(session, "/fenced");
  std::int64_t first = lock.acquire().fencing_token();
  std::int64_t second = lock.acquire().fencing_token();
  EXPECT_GT(first, 0);
  EXPECT_GT(second, first);
}

TEST(LockTest, EightProcessesLoseNoIncrementAndEachWaiterWatchesOneNode) {
  TempDir dir;
  const std::string counter = dir.file("counter");
  test::write_file(counter, "0");
  const std::string connect = chroot_connect();
  Session session(options());  // creates the chroot before the parties race for it
  std::vector<ChildProcess> parties;
  for (int i = 0; i < 8; ++i) {
    parties.push_back(
        child({"increment", connect, "/lock", counter, std::to_string(kIncrementsPerProcess)}, dir,
              "party" + std::to_string(i) + ".log"));
  }
  // Watch the server's own view of the watches while the parties contend: every watched node of
  // the lock is watched by one session, no session watches two, nobody watches the directory.
  auto* info = testing::UnitTest::GetInstance()->current_test_info();
  const std::string lock_dir =
      "/" + std::string(info->test_suite_name()) + "-" + info->name() + "/lock";
  int samples = 0;
  std::size_t most_watched = 0;
  auto running = [&] {
    for (auto& p : parties) {
      if (p.running()) return true;
    }
    return false;
  };
  while (running()) {
    auto watched = test::parse_wchp(test::shared_zk_server().four_letter("wchp"));
    std::map<std::string, int> per_session;
    std::size_t on_lock = 0;
    for (const auto& w : watched) {
      EXPECT_NE(w.path, lock_dir) << "a waiter watches the whole lock directory";
      if (w.path.rfind(lock_dir + "/", 0) != 0) continue;
      ++on_lock;
      EXPECT_EQ(w.sessions.size(), 1u) << w.path << " is watched by several waiters";
      for (const auto& s : w.sessions) ++per_session[s];
    }
    for (const auto& [s, n] : per_session) EXPECT_EQ(n, 1) << "session " << s << " sets " << n;
    most_watched = std::max(most_watched, on_lock);
    ++samples;
    std::this_thread::sleep_for(50ms);  // sampling rate, not a wait for a condition
  }
  expect_all_succeed(parties, 120s);
  EXPECT_EQ(test::read_file(counter), std::to_string(8 * kIncrementsPerProcess));
  EXPECT_GT(samples, 0);
  EXPECT_GE(most_watched, 1u) << "never saw a waiter's watch";
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    auto name = entry.path().filename().string();
    if (name.rfind("counter.watches.", 0) != 0) continue;
    EXPECT_LE(std::stoi(test::read_file(entry.path().string())), kIncrementsPerProcess)
        << "a party set more watches than it waited";
  }
}

// ---- SharedMutex ----

TEST(SharedMutexTest, ReadersShareAndAWriterWaitsForThem) {
  Session a(options());
  Session b(options());
  SharedMutex mutex_a(a, "/rw");
  SharedMutex mutex_b(b, "/rw");
  auto read_a = mutex_a.lock_shared();
  auto read_b = mutex_b.try_lock_shared_for(10s);
  ASSERT_TRUE(read_b.has_value()) << "a second reader was kept out";
  EXPECT_FALSE(mutex_b.try_lock_for(200ms).has_value()) << "a writer got in beside readers";
  read_a.release();
  read_b->release();
  auto write = mutex_a.try_lock_for(10s);
  ASSERT_TRUE(write.has_value());
  EXPECT_FALSE(mutex_b.try_lock_shared_for(200ms).has_value()) << "a reader got in beside a writer";
}

TEST(SharedMutexTest, FiveProcessesKeepWritersAlone) {
  TempDir dir;
  fs::create_directories(dir.file("inside"));
  const std::string connect = chroot_connect();
  Session session(options());
  std::vector<ChildProcess> parties;
  for (int i = 0; i < 5; ++i) {
    parties.push_back(
        child({"rwlock", connect, "/rw", dir.file("inside"), i < 2 ? "writer" : "reader", "40"},
              dir, "party" + std::to_string(i) + ".log"));
  }
  expect_all_succeed(parties, 120s);
}

// ---- Semaphore ----

TEST(SemaphoreTest, FiveProcessesNeverExceedTheLeases) {
  TempDir dir;
  fs::create_directories(dir.file("inside"));
  const std::string connect = chroot_connect();
  Session session(options());
  std::vector<ChildProcess> parties;
  for (int i = 0; i < 5; ++i) {
    parties.push_back(child({"semaphore", connect, "/sem", dir.file("inside"), "2", "30"}, dir,
                            "party" + std::to_string(i) + ".log"));
  }
  expect_all_succeed(parties, 120s);
  // The semaphore admitted two holders at once (not only one at a time), never three.
  int peak = 0, reports = 0;
  for (const auto& entry : fs::directory_iterator(dir.file("inside"))) {
    if (entry.path().filename().string().rfind("peak-", 0) != 0) continue;
    ++reports;
    peak = std::max(peak, std::stoi(test::read_file(entry.path().string())));
  }
  EXPECT_EQ(reports, 5);
  EXPECT_EQ(peak, 2) << "no two processes ever held a lease at once";
}

TEST(SemaphoreTest, LeasesRunOutAndComeBack) {
  Session a(options());
  Session b(options());
  Semaphore sem_a(a, "/sem", 2);
  Semaphore sem_b(b, "/sem", 2);
  auto first = sem_a.acquire();
  auto second = sem_b.acquire();
  EXPECT_FALSE(sem_b.try_acquire_for(200ms).has_value());
  first.release();
  EXPECT_TRUE(sem_b.try_acquire_for(10s).has_value());
}

TEST(SemaphoreTest, DisagreeingLeaseCountsAreRejected) {
  Session session(options());
  Semaphore sem(session, "/sem", 3);
  try {
    Semaphore other(session, "/sem", 4);
    FAIL() << "accepted 4 leases for a 3-lease semaphore";
  } catch (const CoordError& e) {
    EXPECT_EQ(e.kind(), CoordError::Kind::kBadArgument);
  }
}

// ---- Barrier and DoubleBarrier ----

TEST(BarrierTest, GateHoldsFourProcessesUntilRemoved) {
  TempDir dir;
  const std::string connect = chroot_connect();
  Session session(options());
  Barrier gate(session, "/gate");
  ASSERT_TRUE(gate.set());
  EXPECT_FALSE(gate.set());
  std::vector<ChildProcess> parties;
  for (int i = 0; i < 4; ++i) {
    parties.push_back(
        child({"barrier_wait", connect, "/gate", dir.path()}, dir, "p" + std::to_string(i)));
  }
  // Every party is blocked at the gate once the server holds four watches on it.
  auto* info = testing::UnitTest::GetInstance()->current_test_info();
  const std::string gate_path =
      "/" + std::string(info->test_suite_name()) + "-" + info->name() + "/gate";
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& w : test::parse_wchp(test::shared_zk_server().four_letter("wchp"))) {
          if (w.path == gate_path && w.sessions.size() == 4) return true;
        }
        return false;
      },
      60s, "four parties waiting at the gate"));
  EXPECT_EQ(count_prefix(dir.path(), "passed-"), 0);
  EXPECT_TRUE(gate.remove());
  expect_all_succeed(parties, 60s);
  EXPECT_EQ(count_prefix(dir.path(), "passed-"), 4);
  EXPECT_TRUE(gate.wait(0ms));
}

TEST(DoubleBarrierTest, FiveProcessesEnterTogetherAndLeaveTogether) {
  TempDir dir;
  const std::string connect = chroot_connect();
  Session session(options());
  std::vector<ChildProcess> parties;
  for (int i = 0; i < 5; ++i) {
    parties.push_back(
        child({"double_barrier", connect, "/db", dir.path(), "5"}, dir, "p" + std::to_string(i)));
  }
  expect_all_succeed(parties, 120s);
  // The last one out removed the round's nodes.
  Session check(options());
  EXPECT_FALSE(Value<int>(check, "/db/_ready").get().has_value());
}

TEST(DoubleBarrierTest, EnterTimesOutWithoutEnoughParties) {
  Session session(options());
  DoubleBarrier barrier(session, "/db", 2);
  EXPECT_FALSE(barrier.enter(300ms));
  ByteQueue nodes(session, "/db");  // no party node is left behind
  EXPECT_EQ(nodes.size(), 0u);
}

// ---- LeaderElection ----

TEST(LeaderElectionTest, KillingTheLeaderElectsExactlyOneNewLeader) {
  TempDir dir;
  const std::string connect = chroot_connect();
  Session session(options());
  const std::vector<std::string> names = {"a", "b", "c"};
  std::map<std::string, ChildProcess> electors;
  for (const auto& name : names) {
    electors.emplace(name, child({"elect", connect, "/election", name, dir.path()}, dir, name));
  }
  auto leaders = [&](const std::string& except) {
    std::vector<std::string> out;
    for (const auto& name : names) {
      if (name != except && fs::exists(dir.file("leader-" + name))) out.push_back(name);
    }
    return out;
  };
  ASSERT_TRUE(wait_until([&] { return count_prefix(dir.path(), "joined-") == 3; }, 60s,
                         "three electors to join"));
  ASSERT_TRUE(wait_until([&] { return leaders("").size() == 1; }, 30s, "one leader"));
  const std::string first = leaders("")[0];
  LeaderElection observer(session, "/election", "observer", {});
  EXPECT_EQ(observer.leader_identity(), first);

  electors.at(first).kill();  // SIGKILL: the leader cannot step down, its session must expire
  ASSERT_TRUE(wait_until([&] { return leaders(first).size() == 1; }, 60s, "a new leader"));
  const std::string second = leaders(first)[0];
  EXPECT_NE(second, first);
  EXPECT_EQ(observer.leader_identity(), second);
  EXPECT_EQ(leaders(first).size(), 1u);
}

TEST(LeaderElectionTest, CallbacksFollowStartAndStop) {
  Session session(options());
  std::atomic<int> gained{0};
  std::atomic<int> lost{0};
  LeaderElection first(
      session, "/e", "one",
      {.on_gained = [&](std::int64_t) { ++gained; }, .on_lost = [&](LossReason) { ++lost; }});
  LeaderElection second(session, "/e", "two",
                        {.on_gained = [&](std::int64_t) { gained += 10; }, .on_lost = {}});
  first.start();
  ASSERT_TRUE(wait_until([&] { return first.is_leader(); }, 10s, "first leads"));
  second.start();
  EXPECT_EQ(second.leader_identity(), "one");
  first.stop();
  // is_leader() turns true just before on_gained runs on the event thread: wait for the callbacks.
  ASSERT_TRUE(wait_until([&] { return gained.load() == 11 && lost.load() == 1; }, 10s,
                         "second to gain and first to be told it lost"));
  EXPECT_TRUE(second.is_leader());
  EXPECT_FALSE(first.is_leader());
}

// ---- Session loss ----

// The server ends the session when a second handle joins it and closes it: the holder must hear.
TEST(SessionExpiryTest, ExpiryIsReportedToTheLockHolder) {
  Session holder(options(2s));
  Lock lock(holder, "/lock");
  auto lease = lock.acquire();
  std::mutex mu;
  std::vector<LossReason> reasons;
  lease.on_lost([&](LossReason r) {
    std::lock_guard l(mu);
    reasons.push_back(r);
  });

  clientid_t id{};
  id.client_id = holder.session_id();
  const std::string password = holder.session_password();
  std::memcpy(id.passwd, password.data(), sizeof(id.passwd));
  zhandle_t* twin = zookeeper_init(chroot_connect().c_str(), nullptr, 2000, &id, nullptr, 0);
  ASSERT_NE(twin, nullptr);
  EXPECT_TRUE(wait_until([&] { return zoo_state(twin) == ZOO_CONNECTED_STATE; }, 30s,
                         "the twin handle to join the session"));
  zookeeper_close(twin);

  ASSERT_TRUE(wait_until([&] { return holder.state() == SessionState::kExpired; }, 30s,
                         "the holder's session to expire"));
  EXPECT_FALSE(lease.still_held());
  ASSERT_TRUE(wait_until(
      [&] {
        std::lock_guard l(mu);
        return !reasons.empty();
      },
      10s, "the loss callback"));
  {
    std::lock_guard l(mu);
    EXPECT_EQ(reasons.size(), 1u);
  }
  try {
    lock.try_acquire();
    FAIL() << "an expired session acquired a lock";
  } catch (const CoordError& e) {
    EXPECT_EQ(e.kind(), CoordError::Kind::kSessionExpired);
  }
  Session next(options());
  EXPECT_TRUE(Lock(next, "/lock").try_acquire_for(10s).has_value());
}

// A holder paused past its session timeout (SIGSTOP) loses the lock to another process, and
// learns it when it runs again.
TEST(SessionExpiryTest, StoppedHolderLearnsItLostTheLock) {
  TempDir dir;
  const std::string connect = chroot_connect();
  Session session(options());
  auto holder = child({"hold", connect, "/lock", dir.path()}, dir, "holder.log");
  ASSERT_TRUE(wait_until([&] { return fs::exists(dir.file("held")); }, 60s, "the holder"))
      << holder.log();
  holder.signal(SIGSTOP);
  Lock lock(session, "/lock");
  auto lease = lock.try_acquire_for(60s);  // granted once the server expires the holder
  EXPECT_TRUE(lease.has_value());
  holder.signal(SIGCONT);
  ASSERT_TRUE(wait_until([&] { return fs::exists(dir.file("lost")); }, 60s, "the loss report"))
      << holder.log();
  EXPECT_TRUE(test::read_file(dir.file("lost")).find("not_held") != std::string::npos)
      << test::read_file(dir.file("lost"));
  ASSERT_TRUE(wait_until([&] { return fs::exists(dir.file("expired")); }, 60s, "the expiry"));
}

// ---- Counter, Value, Queue ----

TEST(CounterTest, ConcurrentAddsAllCountAndCompareAndSetChecksTheValue) {
  constexpr int kThreads = 4;
  constexpr int kAdds = 25;
  Session session(options());
  Counter counter(session, "/n");
  counter.compare_and_set(counter.get(), 0);  // a repeated run (--gtest_repeat) starts at 0 too
  ASSERT_EQ(counter.get(), 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      Session own(options());
      Counter shared(own, "/n");
      for (int i = 0; i < kAdds; ++i) shared.add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter.get(), kThreads * kAdds);
  EXPECT_TRUE(counter.compare_and_set(kThreads * kAdds, 7));
  EXPECT_FALSE(counter.compare_and_set(kThreads * kAdds, 8));
  EXPECT_EQ(counter.get(), 7);
  EXPECT_EQ(counter.add(-10), -3);
}

TEST(ValueTest, ChangeCallbacksSeeEachSettledValue) {
  Session a(options());
  Session b(options());
  Value<std::vector<int>> writer(a, "/v");
  Value<std::vector<int>> reader(b, "/v");
  std::mutex mu;
  std::vector<std::optional<std::vector<int>>> seen;
  reader.on_change([&](const std::optional<std::vector<int>>& v) {
    std::lock_guard l(mu);
    seen.push_back(v);
  });
  auto last_is = [&](const std::optional<std::vector<int>>& want) {
    return [&, want] {
      std::lock_guard l(mu);
      return !seen.empty() && seen.back() == want;
    };
  };
  ASSERT_TRUE(wait_until(last_is(std::nullopt), 10s, "the initial (absent) value"));
  writer.set({1, 2});
  ASSERT_TRUE(wait_until(last_is(std::vector<int>{1, 2}), 10s, "{1,2}"));
  writer.set({3});
  ASSERT_TRUE(wait_until(last_is(std::vector<int>{3}), 10s, "{3}"));
  writer.remove();
  ASSERT_TRUE(wait_until(last_is(std::nullopt), 10s, "the removal"));
  EXPECT_FALSE(reader.get().has_value());
}

TEST(ValueTest, ValueOfAnotherTypeIsReportedCorrupt) {
  Session session(options());
  Value<std::string>(session, "/v").set("text");
  try {
    Value<std::vector<int>>(session, "/v").get();
    FAIL() << "decoded a string as a vector";
  } catch (const CoordError& e) {
    EXPECT_EQ(e.kind(), CoordError::Kind::kCorrupt);
  }
}

TEST(QueueTest, ItemsComeOutInOrderAndEachOnce) {
  Session producer_session(options());
  Queue<int> producer(producer_session, "/q");
  for (int i = 0; i < 20; ++i) producer.push(i);
  {
    Session s(options());
    Queue<int> consumer(s, "/q");
    for (int i = 0; i < 5; ++i) EXPECT_EQ(consumer.pop(5s), i);
  }
  std::mutex mu;
  std::multiset<int> taken;
  std::vector<std::thread> consumers;
  for (int c = 0; c < 3; ++c) {
    consumers.emplace_back([&] {
      Session s(options());
      Queue<int> consumer(s, "/q");
      while (auto item = consumer.pop(500ms)) {
        std::lock_guard l(mu);
        taken.insert(*item);
      }
    });
  }
  for (auto& t : consumers) t.join();
  EXPECT_EQ(taken.size(), 15u);
  for (int i = 5; i < 20; ++i) EXPECT_EQ(taken.count(i), 1u) << i;
  std::thread late([&] { producer.push(99); });
  EXPECT_EQ(producer.pop(10s), 99);  // a waiting pop wakes for a new item
  late.join();
}

// ---- Server failures ----

TEST(ServerRestartTest, ClientsReconnectAndALeaseReportsTheGap) {
  ZkServer server;
  server.start();
  ASSERT_TRUE(server.wait_ready(60s));
  SessionOptions o;
  o.connect = server.hosts() + "/restart";
  o.session_timeout = 10s;  // longer than the restart, so the sessions survive it
  o.connect_timeout = 30s;
  Session a(o);
  Session b(o);
  Lock lock_a(a, "/lock");
  auto lease = lock_a.acquire();
  std::atomic<int> lost{-1};
  lease.on_lost([&](LossReason r) { lost = static_cast<int>(r); });
  Counter counter_a(a, "/n");
  counter_a.add(5);

  server.stop();
  ASSERT_TRUE(wait_until([&] { return a.state() == SessionState::kSuspended; }, 30s,
                         "the session to notice"));
  EXPECT_FALSE(lease.still_held());
  ASSERT_TRUE(wait_until([&] { return lost.load() == static_cast<int>(LossReason::kSuspended); },
                         10s, "the lease's loss callback"));
  std::atomic<std::int64_t> during{0};
  std::thread writer([&] { during = Counter(b, "/n").add(1); });  // rides out the outage

  server.start();
  ASSERT_TRUE(server.wait_ready(60s));
  writer.join();
  EXPECT_EQ(during.load(), 6);
  ASSERT_TRUE(a.wait_connected(30s));
  EXPECT_FALSE(lease.still_held()) << "a lease came back to life after a gap";
  // The same session survived, so its node still guards the lock until the holder lets go.
  Lock lock_b(b, "/lock");
  EXPECT_FALSE(lock_b.try_acquire_for(300ms).has_value());
  lease.release();
  EXPECT_TRUE(lock_b.try_acquire_for(10s).has_value());
  EXPECT_EQ(counter_a.get(), 6);
}

TEST(EnsembleTest, KillingTheZooKeeperLeaderKeepsSessionsAndElectionsAlive) {
  test::ZkEnsemble ensemble;
  ensemble.start();
  ASSERT_TRUE(ensemble.wait_ready(90s));
  SessionOptions o;
  o.connect = ensemble.hosts() + "/ensemble";
  o.session_timeout = 6s;
  o.connect_timeout = 30s;
  Session session(o);
  const auto id = session.session_id();
  LeaderElection election(session, "/election", "me", {});
  election.start();
  ASSERT_TRUE(wait_until([&] { return election.is_leader(); }, 10s, "leadership"));
  Counter counter(session, "/n");
  counter.add(1);

  int old_leader = ensemble.leader();
  ASSERT_GE(old_leader, 0);
  ensemble.member(old_leader).kill9();
  // A compare-and-set caught by the failover may not know its outcome, and says so; a plain
  // write rides it out.
  try {
    EXPECT_EQ(counter.add(1), 2);
  } catch (const CoordError& e) {
    EXPECT_EQ(e.kind(), CoordError::Kind::kConnectionLoss) << e.what();
  }
  Value<std::string> note(session, "/note");
  note.set("written during the failover");
  ASSERT_TRUE(wait_until(
      [&] {
        int now = ensemble.leader();
        return now >= 0 && now != old_leader;
      },
      60s, "a new ZooKeeper leader"));
  ASSERT_TRUE(session.wait_connected(30s));
  EXPECT_EQ(session.session_id(), id);
  EXPECT_TRUE(wait_until([&] { return election.is_leader(); }, 30s, "leadership again"));
  const auto now = counter.get();
  EXPECT_TRUE(now == 1 || now == 2) << now;
  EXPECT_EQ(counter.add(1), now + 1);
  EXPECT_EQ(note.get(), "written during the failover");
}

}  // namespace
}  // namespace clupy::coord
