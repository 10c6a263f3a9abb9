// A master fed bad bytes closes that one connection, logs why, and goes on serving the others.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clupy.pb.h"
#include "cluster_fixture.hpp"
#include "common/frame.hpp"

namespace clupy::test {
namespace {

using std::chrono::seconds;

std::string frame_of(const wire::Envelope& envelope) {
  std::string bytes;
  common::append_frame(envelope, bytes);
  return bytes;
}

std::string header(std::uint32_t length) {
  std::uint32_t be = htonl(length);
  return std::string(reinterpret_cast<const char*>(&be), 4);
}

// A raw TCP connection that a test drives byte by byte.
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConnection() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& bytes) {
    (void)::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  // True when the peer closes the connection (after any bytes it sends) within the timeout.
  bool closed_by_peer_within(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;
    }
    return false;
  }

 private:
  int fd_;
  bool connected_ = false;
};

class BadInputTest : public ClusterFixture {
 protected:
  void SetUp() override {
    write_file(dir_.file("clupy.master.yaml"), "handshake_timeout: 1s\nmax_frame_size: 64KiB\n");
    start_master();
    start_server("steady");
    ASSERT_TRUE(servers_become({"steady"}));
  }

  // After each bad peer: the master still runs, still answers, still lists its server.
  void expect_master_serving() {
    EXPECT_TRUE(master_.running()) << master_.log();
    EXPECT_EQ(server_ids(), std::set<std::string>{"steady"});
  }

  bool master_logged(const std::string& text) {
    return wait_until(
        [&] { return read_file(dir_.file("master.log")).find(text) != std::string::npos; },
        seconds(20), "the master to log '" + text + "'");
  }
};

TEST_F(BadInputTest, GarbageBytesCloseOnlyThatConnection) {
  RawConnection raw(port_);
  ASSERT_TRUE(raw.connected());
  raw.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(raw.closed_by_peer_within(seconds(20)));
  EXPECT_TRUE(master_logged("oversized frame"));  // "GET " read as a 1.2 GB length
  expect_master_serving();
}

TEST_F(BadInputTest, OversizedFrameIsRefusedBeforeItsBodyArrives) {
  RawConnection raw(port_);
  raw.send(header(64u * 1024 + 1));
  EXPECT_TRUE(raw.closed_by_peer_within(seconds(20)));
  EXPECT_TRUE(master_logged("65537 bytes announced, limit 65536"));
  expect_master_serving();
}

TEST_F(BadInputTest, UnparsableFrameIsRefused) {
  RawConnection raw(port_);
  raw.send(header(6) + std::string("\xff\xff\xff\xff\xff\xff", 6));
  EXPECT_TRUE(raw.closed_by_peer_within(seconds(20)));
  EXPECT_TRUE(master_logged("unparsable frame"));
  expect_master_serving();
}

TEST_F(BadInputTest, OversizedAttachmentIsRefusedBeforeItArrives) {
  RawConnection raw(port_);
  wire::Envelope run;
  run.mutable_run_task()->set_task_id(1);
  std::string bytes;
  ASSERT_TRUE(common::append_attached_frame(run, 64u * 1024 + 1, bytes, 1u << 20));
  raw.send(bytes);
  EXPECT_TRUE(raw.closed_by_peer_within(seconds(20)));
  EXPECT_TRUE(master_logged("oversized attachment: 65537 bytes announced, limit 65536"));
  expect_master_serving();
}

TEST_F(BadInputTest, AttachmentToAMessageThatCannotHoldOneIsRefused) {
  RawConnection raw(port_);
  wire::Envelope hello;
  hello.mutable_hello()->set_peer_name("attacher");
  std::string bytes;
  ASSERT_TRUE(common::append_attached_frame(hello, 5, bytes));
  raw.send(bytes + "12345");
  EXPECT_TRUE(raw.closed_by_peer_within(seconds(20)));
  EXPECT_TRUE(master_logged("malformed attachment: 5 bytes attached"));
  expect_master_serving();
}

TEST_F(BadInputTest, TruncatedFrameIsLoggedWhenThePeerLeaves) {
  {
    RawConnection raw(port_);
    raw.send(header(100) + std::string(10, 'x'));
  }
  EXPECT_TRUE(master_logged("truncated frame"));
  expect_master_serving();
}

TEST_F(BadInputTest, FrameBeforeTheHandshakeIsRefused) {
  wire::Envelope early;
  early.mutable_registry_request();
  RawConnection raw(port_);
  raw.send(frame_of(early));
  EXPECT_TRUE(raw.closed_by_peer_within(seconds(20)));
  EXPECT_TRUE(master_logged("first frame was not Hello"));
  expect_master_serving();
}

TEST_F(BadInputTest, HalfOpenConnectionDoesNotBlockOthersAndIsDroppedAtTheDeadline) {
  RawConnection silent(port_);
  ASSERT_TRUE(silent.connected());
  expect_master_serving();  // served while the silent peer holds its connection open
  EXPECT_TRUE(silent.closed_by_peer_within(seconds(30)));
  EXPECT_TRUE(master_logged("handshake timed out"));
  expect_master_serving();
}

TEST_F(BadInputTest, ManyBadPeersAtOnceLeaveTheMasterServing) {
  std::vector<std::unique_ptr<RawConnection>> peers;
  for (int i = 0; i < 50; ++i) {
    peers.push_back(std::make_unique<RawConnection>(port_));
    peers.back()->send(i % 2 ? header(0xffffffff) : std::string("\x00\x00\x00\x03zzz", 7));
  }
  expect_master_serving();
}

}  // namespace
}  // namespace clupy::test
