// Hostile and broken peers against a real master and real servers (issue 18): each test sends
// the offending bytes over a real connection (a HostilePeer, or a real program that misbehaves)
// and checks the daemons afterwards: alive, memory bounded, other clients' tasks intact, the
// promised error. docs/protocol.md's "Security" section lists the rule each one proves. A
// server's data port has its hostile tests in pushed_calls_test.cc (DataPortHostileTest), whose
// fixture runs the program that pushes calls there.
#include <arpa/inet.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "base/hex.hpp"
#include "clupy/errors.hpp"
#include "cluster_fixture.hpp"
#include "common/auth.hpp"
#include "hostile_peer.hpp"

namespace clupy::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::uint64_t kFirstMasterTaskId = std::uint64_t{1} << 32;  // SlotTable's first id

std::uint64_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

std::string unhex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

bool is_failure(const wire::Envelope& m, const std::string& text) {
  if (!m.has_task_results()) return false;
  for (const auto& r : m.task_results().results())
    if (r.has_failure() && r.failure().message().find(text) != std::string::npos) return true;
  return false;
}

class HostileTest : public ClusterFixture {
 protected:
  void start_master_with(const std::string& yaml) {
    write_file(dir_.file("clupy.master.yaml"), yaml);
    start_master();
  }
  std::string token() { return read_token(token_file()); }
  std::string image_sha() { return file_sha256(HOSTILE_PROGRAM); }
  std::uint64_t image_size() { return std::filesystem::file_size(HOSTILE_PROGRAM); }

  // The encoded call of the program's sleeps(ms).
  std::string sleep_call(int ms) {
    ChildProcess child({{HOSTILE_PROGRAM, "print-call", std::to_string(ms)},
                        {},
                        dir_.path(),
                        dir_.file("print-call.out")});
    EXPECT_TRUE(child.wait(seconds(30)));
    const std::string hex = line_after(child.log(), "CALL ");
    EXPECT_FALSE(hex.empty()) << child.log();
    return unhex(hex);
  }

  // A client peer with a job open on the program's image (uploaded when the master asks).
  std::unique_ptr<HostilePeer> client(const std::string& name = "hostile-client") {
    auto peer = std::make_unique<HostilePeer>(port_);
    EXPECT_TRUE(peer->handshake(token(), wire::ROLE_CLIENT, name));
    auto opened = peer->open_job(image_sha(), image_size(), name);
    EXPECT_TRUE(opened);
    if (opened && opened->need_image()) peer->upload(HOSTILE_PROGRAM, image_sha());
    return peer;
  }

  bool master_logged(const std::string& text, std::chrono::milliseconds timeout = seconds(20)) {
    return wait_until(
        [&] { return read_file(dir_.file("master.log")).find(text) != std::string::npos; }, timeout,
        "the master to log '" + text + "'");
  }

  // The master runs and answers, and a real program's tasks still run to the end.
  void expect_master_serving_programs(const std::string& tag) {
    ASSERT_TRUE(master_.running()) << master_.log();
    const std::string out =
        run_client_program(HOSTILE_PROGRAM, "sleeps-" + tag, {"sleeps", "4", "10"});
    EXPECT_NE(out.find("SLEEPS ok=4 of 4"), std::string::npos) << out;
    EXPECT_TRUE(master_.running()) << master_.log();
  }
};

// ---- 1: nothing is allocated for a peer beyond a small bound before it proves the token ----

TEST_F(HostileTest, AnnouncedHugeAttachmentsBeforeTheHandshakeAllocateNothing) {
  start_master();
  const std::uint64_t before = rss_bytes(master_.pid());
  std::vector<std::unique_ptr<HostilePeer>> peers;
  for (int i = 0; i < 16; ++i) {
    // The 8-byte header of a frame: body length with the attachment flag, then 64 MiB.
    auto peer = std::make_unique<HostilePeer>(port_);
    const std::uint32_t words[2] = {htonl(0x8000'0000u | 10u), htonl(64u << 20)};
    peer->send_bytes(std::string(reinterpret_cast<const char*>(words), sizeof words));
    peers.push_back(std::move(peer));
  }
  for (auto& peer : peers) EXPECT_TRUE(peer->closed_by_daemon_within(seconds(10)));
  EXPECT_TRUE(master_logged("oversized attachment: 67108864 bytes announced, limit 65536"));
  const std::uint64_t after = rss_bytes(master_.pid());
  EXPECT_LT(after, before + (16u << 20)) << "master RSS grew from " << before << " to " << after;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(status());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(2));
}

TEST_F(HostileTest, PendingUnauthenticatedConnectionsAreCapped) {
  start_master_with("max_pending_connections: 4\nhandshake_timeout: 3s\n");
  std::vector<std::unique_ptr<HostilePeer>> silent;
  for (int i = 0; i < 4; ++i) silent.push_back(std::make_unique<HostilePeer>(port_));
  // Once the four are in their handshake, a fifth is closed at once (not at its 3 s deadline).
  bool refused = false;
  const auto deadline = std::chrono::steady_clock::now() + seconds(5);
  while (!refused && std::chrono::steady_clock::now() < deadline) {
    HostilePeer extra(port_);
    refused = extra.closed_by_daemon_within(milliseconds(500));
  }
  EXPECT_TRUE(refused);
  EXPECT_TRUE(master_logged("max_pending_connections"));
  // The silent ones time out; then a token holder gets in again.
  for (auto& peer : silent) EXPECT_TRUE(peer->closed_by_daemon_within(seconds(10)));
  HostilePeer late(port_);
  EXPECT_TRUE(late.handshake(token(), wire::ROLE_CLIENT));
  EXPECT_TRUE(master_.running());
}

// ---- 2: names are bounded and escaped wherever they are logged ----

TEST_F(HostileTest, PeerNamesCannotForgeOrFloodLogLines) {
  start_master();
  const std::string forged = "x\n[2026-01-01 00:00:00.000] [master] [info] forged line\x1b[31m";
  {
    HostilePeer wrong_token(port_);
    EXPECT_FALSE(wrong_token.handshake(std::string(64, '0'), wire::ROLE_CLIENT, forged));
  }
  {
    HostilePeer big(port_);
    big.handshake(token(), wire::ROLE_CLIENT, std::string(60'000, 'n'));
    auto opened = big.open_job(image_sha(), image_size(), forged + std::string(60'000, 'c'));
    EXPECT_TRUE(opened);
  }
  EXPECT_TRUE(master_logged("authentication failed for x\\x0a[2026"));
  EXPECT_TRUE(master_logged("opened by x\\x0a[2026"));
  const std::string log = read_file(dir_.file("master.log"));
  EXPECT_EQ(log.find("\n[2026-01-01 00:00:00.000] [master] [info] forged line"), std::string::npos);
  EXPECT_EQ(log.find('\x1b'), std::string::npos);
  EXPECT_LT(log.size(), 40'000u) << "60 KB names must not reach the log whole";
  EXPECT_NE(log.find("(60000 bytes)"), std::string::npos);
}

// ---- 3 and 4: a reused task id is refused; nothing else is touched; nothing leaks ----

TEST_F(HostileTest, ReusedTaskIdIsRefusedAndLosingItsServerCannotEndTheMaster) {
  start_master();
  start_server("victim", {"--capacity", "1"});
  ASSERT_TRUE(servers_become({"victim"}));
  const std::string call = sleep_call(30'000);
  {
    auto peer = client();
    peer->submit({7}, call);
    ASSERT_TRUE(wait_until(
        [&] {
          auto s = status();
          return s && s->running_tasks == 1;
        },
        seconds(30), "the first task 7 to run"));
    peer->submit({7}, call);
    auto refused = peer->receive_until(
        [](const wire::Envelope& m) { return is_failure(m, "task id 7 is already used"); },
        seconds(10));
    ASSERT_TRUE(refused) << "no refusal of the second task 7";
    EXPECT_EQ(refused->task_results().results(0).failure().kind(),
              static_cast<std::uint32_t>(FailureKind::kProtocol));
  }  // the client leaves with task 7 running
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = status();
        return s && s->clients == 0;
      },
      seconds(10), "the client to be gone"));
  const pid_t victim = servers_["victim"].pid();
  servers_["victim"].kill();
  ::kill(-victim, SIGKILL);  // its worker, in the server's process group
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = status();
        return s && !s->servers.empty() && !s->servers[0].connected;
      },
      seconds(10), "the master to see the server gone"));
  EXPECT_TRUE(master_.running()) << master_.log();
  start_server("steady");
  ASSERT_TRUE(wait_until([&] { return server_ids().count("steady") > 0; }, seconds(30), "steady"));
  expect_master_serving_programs("after-loss");
  EXPECT_EQ(master_.log().find("unexpected error"), std::string::npos);
}

TEST_F(HostileTest, ReusedIdsLeaveNothingQueuedOnceTheirClientsLeave) {
  start_master();
  const std::string call = sleep_call(10);
  for (int c = 0; c < 10; ++c) {
    auto peer = client("reuser-" + std::to_string(c));
    // Unrunnable (no server has the label), so they stay queued: 1 kept, 99 refused.
    peer->submit(std::vector<std::uint64_t>(100, 5), call, /*unrunnable=*/true);
    EXPECT_TRUE(peer->receive_until(
        [](const wire::Envelope& m) { return is_failure(m, "already used"); }, seconds(10)));
  }
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = status();
        return s && s->clients == 0 && s->queued_tasks == 0;
      },
      seconds(10), "every queued task to leave with its client"));
}

// ---- 5: the window and the job id are the master's to enforce ----

TEST_F(HostileTest, MasterEnforcesTheWindowAndTheJobId) {
  start_master_with("client_window: 4\n");
  auto peer = client();
  const std::string call = sleep_call(10);
  std::vector<std::uint64_t> ids;
  for (std::uint64_t i = 1; i <= 1000; ++i) ids.push_back(i);
  peer->submit(ids, call, /*unrunnable=*/true);
  int refused = 0;
  while (refused < 992) {
    auto m = peer->receive_until([](const wire::Envelope& e) { return e.has_task_results(); },
                                 seconds(10));
    if (!m) break;
    for (const auto& r : m->task_results().results())
      if (r.failure().message().find("twice the master's window (client_window: 4)") !=
          std::string::npos)
        ++refused;
  }
  EXPECT_EQ(refused, 992);
  auto s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->queued_tasks, 8u);
  peer->submit({5000}, call, true, /*job_id=*/999);
  EXPECT_TRUE(peer->receive_until(
      [](const wire::Envelope& m) { return is_failure(m, "SubmitTasks names job 999"); },
      seconds(10)));
  EXPECT_EQ(status()->queued_tasks, 8u);
}

// ---- 6: a live server's id cannot be taken ----

TEST_F(HostileTest, DuplicateServerIdIsRefusedWhileTheFirstLives) {
  start_master();
  start_server("steady");
  ASSERT_TRUE(servers_become({"steady"}));
  HostilePeer impostor(port_);
  ASSERT_TRUE(impostor.handshake(token(), wire::ROLE_SERVER));
  wire::Envelope reg;
  reg.mutable_register_server()->mutable_server()->set_server_id("steady");
  reg.mutable_register_server()->mutable_server()->set_hostname("impostor-host");
  reg.mutable_register_server()->mutable_server()->set_capacity(64);
  impostor.send(reg);
  auto refusal =
      impostor.receive_until([](const wire::Envelope& m) { return m.has_error(); }, seconds(10));
  ASSERT_TRUE(refusal);
  EXPECT_NE(refusal->error().message().find("server id 'steady' is in use by a live server"),
            std::string::npos)
      << refusal->error().message();
  EXPECT_TRUE(impostor.closed_by_daemon_within(seconds(10)));
  // A second real server with the same id is refused too, and takes over once the first is gone.
  ChildProcess& twin = servers_["twin"] =
      ChildProcess({{CLUPY_BINARY, "--serve", "--master-url", master_url(), "--token-file",
                     token_file(), "--server-id", "steady", "--registration-interval", "200ms",
                     "--failure-retry-interval", "200ms"},
                    {},
                    dir_.path(),
                    dir_.file("twin.log")});
  ASSERT_TRUE(wait_until(
      [&] {
        return read_file(twin.log_path()).find("is in use by a live server") != std::string::npos;
      },
      seconds(20), "the twin to be refused"));
  auto s = status();
  ASSERT_TRUE(s && s->servers.size() == 1u);
  EXPECT_TRUE(s->servers[0].connected);
  EXPECT_EQ(s->servers[0].pid, static_cast<std::uint32_t>(servers_["steady"].pid()));
  expect_master_serving_programs("with-twin");
  servers_["steady"].signal(SIGTERM);
  ASSERT_TRUE(wait_until(
      [&] {
        auto now = status();
        return now && now->servers.size() == 1u && now->servers[0].connected &&
               now->servers[0].pid == static_cast<std::uint32_t>(twin.pid());
      },
      seconds(20), "the twin to take the id over"));
}

// ---- 7: a server speaks only for itself and its own tasks ----

TEST_F(HostileTest, ServerMaySpeakOnlyForItselfAndItsOwnTasks) {
  start_master();
  start_server("steady", {"--capacity", "1"});
  ASSERT_TRUE(servers_become({"steady"}));
  auto owner = client();
  owner->submit({1}, sleep_call(2'000));
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = status();
        return s && s->running_tasks == 1;
      },
      seconds(30), "task 1 to run on steady"));
  for (const bool registered : {false, true}) {
    HostilePeer rogue(port_);
    ASSERT_TRUE(rogue.handshake(token(), wire::ROLE_SERVER));
    if (registered) {
      wire::Envelope reg;
      reg.mutable_register_server()->mutable_server()->set_server_id("rogue");
      reg.mutable_register_server()->mutable_server()->set_capacity(1);
      (*reg.mutable_register_server()->mutable_server()->mutable_labels())["only"] = "rogue";
      rogue.send(reg);
      ASSERT_TRUE(rogue.receive_until(
          [](const wire::Envelope& m) { return m.has_server_registered(); }, seconds(10)));
    }
    for (std::uint64_t i = 0; i < 4; ++i) {
      wire::Envelope output;
      output.mutable_task_output()->set_task_id(kFirstMasterTaskId + i);
      output.mutable_task_output()->set_text("forged output\n");
      rogue.send(output);
    }
    wire::Envelope beat;
    beat.mutable_heartbeat()->set_server_id("steady");
    beat.mutable_heartbeat()->set_busy_slots(0);
    rogue.send(beat);
    auto answer =
        rogue.receive_until([](const wire::Envelope& m) { return m.has_error(); }, seconds(10));
    ASSERT_TRUE(answer) << "a heartbeat for another server's id must be refused";
  }
  // The owner gets its result and never the forged output.
  bool forged = false;
  auto result = owner->receive_until(
      [&](const wire::Envelope& m) {
        if (m.has_task_output() && m.task_output().text().find("forged") != std::string::npos)
          forged = true;
        return m.has_task_results();
      },
      seconds(30));
  ASSERT_TRUE(result);
  EXPECT_TRUE(result->task_results().results(0).failure().message().empty());
  EXPECT_FALSE(forged);
  auto s = status();
  ASSERT_TRUE(s);
  for (const auto& server : s->servers)
    if (server.server_id == "steady") {
      EXPECT_TRUE(server.connected);
    }
}

// ---- 8: one job per connection ----

TEST_F(HostileTest, SecondOpenJobOnAConnectionIsRefused) {
  start_master();
  start_server("steady");
  ASSERT_TRUE(servers_become({"steady"}));
  auto peer = client();
  std::string error;
  EXPECT_FALSE(peer->open_job(std::string(32, 'z'), 1000, "again", &error));
  EXPECT_NE(error.find("one per connection"), std::string::npos) << error;
  EXPECT_TRUE(peer->closed_by_daemon_within(seconds(10)));
  expect_master_serving_programs("after-second-open");
}

// ---- 9: silent authenticated connections are closed ----

TEST_F(HostileTest, AuthenticatedPeerThatSendsNoMessageIsClosedAfterIdleTimeout) {
  start_master_with("idle_timeout: 5s\nreservation_ttl: 3s\nmaintenance_period: 200ms\n");
  start_server("steady");
  ASSERT_TRUE(servers_become({"steady"}));
  HostilePeer trickle(port_);
  ASSERT_TRUE(trickle.handshake(token(), wire::ROLE_CLIENT));
  const auto t0 = std::chrono::steady_clock::now();
  bool closed = false;
  // One byte a second of a frame that never completes.
  const std::uint32_t header = htonl(1000);
  std::string bytes(reinterpret_cast<const char*>(&header), 4);
  bytes += std::string(20, 'x');
  for (std::size_t i = 0; i < bytes.size() && !closed; ++i) {
    trickle.send_bytes(bytes.substr(i, 1));
    closed = trickle.closed_by_daemon_within(seconds(1));
  }
  EXPECT_TRUE(closed);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, seconds(4));
  EXPECT_LT(took, seconds(12));
  EXPECT_TRUE(master_logged("idle_timeout"));
  // The server, which heartbeats, stays.
  auto s = status();
  ASSERT_TRUE(s && s->servers.size() == 1u);
  EXPECT_TRUE(s->servers[0].connected);
}

// ---- 10, 11, 12: uploads ----

TEST_F(HostileTest, InterruptedUploadIsDiscardedAndItsWaitersAreTold) {
  start_master();
  start_server("steady");
  ASSERT_TRUE(servers_become({"steady"}));
  auto uploader = std::make_unique<HostilePeer>(port_);
  ASSERT_TRUE(uploader->handshake(token(), wire::ROLE_CLIENT, "killed-uploader"));
  auto opened = uploader->open_job(image_sha(), image_size());
  ASSERT_TRUE(opened && opened->need_image());
  uploader->upload(HOSTILE_PROGRAM, image_sha(), 1);  // one chunk, then "Ctrl-C"
  HostilePeer waiter(port_);
  ASSERT_TRUE(waiter.handshake(token(), wire::ROLE_CLIENT, "waiter"));
  auto waiting = waiter.open_job(image_sha(), image_size());
  ASSERT_TRUE(waiting);
  EXPECT_FALSE(waiting->need_image());  // one upload per image: it waits for the first
  waiter.submit({1}, sleep_call(10));
  uploader.reset();
  auto told = waiter.receive_until([](const wire::Envelope& m) { return m.has_image_failed(); },
                                   seconds(10));
  ASSERT_TRUE(told) << "the waiting job must not wait silently";
  EXPECT_NE(told->image_failed().reason().find("was interrupted"), std::string::npos);
  EXPECT_TRUE(waiter.receive_until(
      [](const wire::Envelope& m) { return is_failure(m, "was interrupted"); }, seconds(10)));
  // The next run uploads it again and runs.
  expect_master_serving_programs("after-interrupted-upload");
  EXPECT_FALSE(std::filesystem::exists(
      dir_.file("clupy-master-data/images/" + base::to_hex(image_sha()) + ".part")));
}

TEST_F(HostileTest, TwoCopiesOfAProgramStartedTogetherBothRun) {
  start_master();
  start_server("steady");
  ASSERT_TRUE(servers_become({"steady"}));
  std::vector<ChildProcess> copies;
  for (int i = 0; i < 2; ++i)
    copies.push_back(
        ChildProcess({{HOSTILE_PROGRAM, "sleeps", "4", "10"},
                      {{"CLUPY_MASTER_URL", master_url()}, {"CLUPY_TOKEN_FILE", token_file()}},
                      dir_.path(),
                      dir_.file("copy" + std::to_string(i) + ".out")}));
  for (auto& copy : copies) {
    EXPECT_TRUE(copy.wait(seconds(120)));
    EXPECT_NE(copy.log().find("SLEEPS ok=4 of 4"), std::string::npos) << copy.log();
  }
  // Also raw: both open before any chunk; only the first is asked to upload.
  HostilePeer a(port_), b(port_);
  ASSERT_TRUE(a.handshake(token(), wire::ROLE_CLIENT) && b.handshake(token(), wire::ROLE_CLIENT));
  const std::string other = std::string(31, 'q') + "1";
  auto first = a.open_job(other, 1000);
  auto second = b.open_job(other, 1000);
  ASSERT_TRUE(first && second);
  EXPECT_TRUE(first->need_image());
  EXPECT_FALSE(second->need_image());
}

TEST_F(HostileTest, UploadSizesAreCheckedWithTheReason) {
  const std::uint64_t store_size = image_size() / 2;  // too small for the program
  start_master_with("image_store_size: " + std::to_string(store_size) + "\n");
  HostilePeer huge(port_);
  ASSERT_TRUE(huge.handshake(token(), wire::ROLE_CLIENT));
  std::string error;
  EXPECT_FALSE(huge.open_job(std::string(32, 'h'), std::uint64_t{100} << 30, "huge", &error));
  EXPECT_NE(error.find("more than the master's image_store_size (" + std::to_string(store_size) +
                       " bytes)"),
            std::string::npos)
      << error;
  // A real program larger than the store is refused at init, with the reason.
  const std::string out = run_client_program(HOSTILE_PROGRAM, "too-big", {"sleeps", "1", "1"});
  EXPECT_NE(out.find("the master refused the job: the program image is"), std::string::npos) << out;
  EXPECT_NE(out.find("image_store_size"), std::string::npos) << out;
  // An upload larger than it declared is cut off.
  HostilePeer liar(port_);
  ASSERT_TRUE(liar.handshake(token(), wire::ROLE_CLIENT));
  const std::string fake_sha(32, 'L');
  auto opened = liar.open_job(fake_sha, 1000);
  ASSERT_TRUE(opened && opened->need_image());
  liar.upload(HOSTILE_PROGRAM, fake_sha, 1);
  auto failed =
      liar.receive_until([](const wire::Envelope& m) { return m.has_image_failed(); }, seconds(10));
  ASSERT_TRUE(failed);
  EXPECT_NE(failed->image_failed().reason().find("larger than the 1000 bytes OpenJob declared"),
            std::string::npos);
  EXPECT_TRUE(master_.running());
}

// ---- 13: workers get only their own fds; a killed server is lost at once ----

TEST_F(HostileTest, WorkersInheritOnlyTheirOwnDescriptors) {
  start_master();
  start_server("steady");
  ASSERT_TRUE(servers_become({"steady"}));
  const std::string out = run_client_program(HOSTILE_PROGRAM, "fds", {"fds"});
  EXPECT_EQ(line_after(out, "FDS "), "0,1,2,3") << out;
  // And every descriptor the server opened itself is close-on-exec. Descriptors it inherited
  // (this test's own, passed on without close-on-exec by whoever started it) are not its own.
  auto close_on_exec = [](const std::filesystem::path& fdinfo_entry) {
    const std::string info = read_file(fdinfo_entry.string());
    const auto at = info.find("flags:");
    return at != std::string::npos && (std::stoul(info.substr(at + 6), nullptr, 8) & 02000000) != 0;
  };
  std::set<std::string> inherited;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fdinfo"))
    if (!close_on_exec(entry.path())) inherited.insert(entry.path().filename().string());
  const std::string fdinfo = "/proc/" + std::to_string(servers_["steady"].pid()) + "/fdinfo";
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(fdinfo)) {
    const int fd = std::stoi(entry.path().filename().string());
    if (fd <= 2 || inherited.count(entry.path().filename().string()) > 0) continue;
    EXPECT_TRUE(close_on_exec(entry.path()))
        << "fd " << fd << " of the server is not close-on-exec: "
        << std::filesystem::read_symlink("/proc/" + std::to_string(servers_["steady"].pid()) +
                                         "/fd/" + std::to_string(fd));
    ++checked;
  }
  EXPECT_GT(checked, 3);
}

TEST_F(HostileTest, KilledServerIsLostAtOnceWhileItsWorkerStillRuns) {
  start_master();
  start_server("victim", {"--capacity", "1"});
  ASSERT_TRUE(servers_become({"victim"}));
  auto peer = client();
  peer->submit({1}, sleep_call(6'000));
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = status();
        return s && s->running_tasks == 1;
      },
      seconds(30), "the task to run"));
  const pid_t victim = servers_["victim"].pid();
  ::kill(victim, SIGKILL);  // its worker lives on for a while
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = status();
        return s && s->servers.size() == 1u && !s->servers[0].connected;
      },
      seconds(4), "the master to see the killed server's connection close"));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(4));
  ::kill(-victim, SIGKILL);  // the orphaned worker, in the server's process group
  servers_["victim"].kill();
}

// ---- 14: only the program's own invoker thunks run ----

TEST_F(HostileTest, ForgedInvokersFailWithProtocolOnARealWorker) {
  start_master();
  start_server("steady");
  ASSERT_TRUE(servers_become({"steady"}));
  const std::string out = run_client_program(HOSTILE_PROGRAM, "forged", {"forged"});
  EXPECT_NE(out.find("FORGED refused=3 of 3 genuine=1"), std::string::npos) << out;
  EXPECT_TRUE(master_.running());
}

// ---- 15: /status and /metrics for token holders ----

TEST_F(HostileTest, HttpStatusNeedsTheTokenWhenConfigured) {
  const int http = free_loopback_port();
  start_master_with("http_port: " + std::to_string(http) + "\nhttp_auth: token\n");
  start_server("steady");
  ASSERT_TRUE(servers_become({"steady"}));
  const auto get = [&](const std::string& path, const std::string& extra = "") {
    return tcp_exchange(http, "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n",
                        seconds(10));
  };
  const std::string anonymous = get("/status");
  EXPECT_NE(anonymous.find("401"), std::string::npos) << anonymous;
  EXPECT_EQ(anonymous.find("steady"), std::string::npos);
  EXPECT_NE(get("/metrics").find("401"), std::string::npos);
  EXPECT_NE(get("/status", "Authorization: Bearer wrong\r\n").find("401"), std::string::npos);
  EXPECT_NE(get("/healthz").find("200 OK"), std::string::npos);
  const std::string allowed = get("/status", "Authorization: Bearer " + token() + "\r\n");
  EXPECT_NE(allowed.find("200 OK"), std::string::npos) << allowed;
  EXPECT_NE(allowed.find("\"steady\""), std::string::npos);
  EXPECT_TRUE(master_.running());
}

}  // namespace
}  // namespace clupy::test
