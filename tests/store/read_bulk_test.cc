// RedisConnection::read_bulk, the store's own parser for chunk replies, against a scripted fake
// server on 127.0.0.1 that sends its replies in awkward fragments.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "store/redis.hpp"

namespace clupy::store {
namespace {

using namespace std::chrono_literals;

// Accepts one connection and writes `pieces` to it, one write each with a short pause, then
// waits until the client closes.
class FakeServer {
 public:
  explicit FakeServer(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listener_, 1), 0);
    socklen_t len = sizeof addr;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeServer() {
    thread_.join();
    ::close(listener_);
  }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }

 private:
  void serve() {
    int fd = ::accept(listener_, nullptr, nullptr);
    if (fd < 0) return;
    for (const std::string& piece : pieces_) {
      std::this_thread::sleep_for(2ms);
      if (::send(fd, piece.data(), piece.size(), MSG_NOSIGNAL) < 0) break;
    }
    char sink[4096];
    while (::read(fd, sink, sizeof sink) > 0) {
    }
    ::close(fd);
  }

  std::vector<std::string> pieces_;
  int listener_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST(ReadBulkTest, ParsesFragmentedBulkNilAndErrorReplies) {
  std::string big(200 * 1024, 'b');  // larger than the parser's 64 KiB header buffer
  std::string all = "$5\r\nhello\r\n$-1\r\n-ERR no such thing\r\n$0\r\n\r\n$" +
                    std::to_string(big.size()) + "\r\n" + big + "\r\n$3\r\nend\r\n";
  // Split into pieces that cut every header, payload and CRLF somewhere.
  std::vector<std::string> pieces;
  for (std::size_t at = 0, step = 1; at < all.size(); at += step, step = step * 3 % 70001 + 1)
    pieces.push_back(all.substr(at, step));
  FakeServer server(pieces);
  RedisConnection c(parse_redis_url(server.url()), 2s, 5s);
  for (int i = 0; i < 6; ++i) c.append({"GET", "k"});
  ByteBuffer out;
  ASSERT_TRUE(c.read_bulk(out));
  EXPECT_EQ(out.view(), "hello");
  EXPECT_FALSE(c.read_bulk(out));
  try {
    c.read_bulk(out);
    FAIL() << "no error";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), StoreError::Code::kServer);
    EXPECT_NE(std::string(e.what()).find("no such thing"), std::string::npos) << e.what();
  }
  ASSERT_TRUE(c.read_bulk(out));
  EXPECT_EQ(out.size(), 0u);
  ASSERT_TRUE(c.read_bulk(out));
  EXPECT_TRUE(out.view() == big);
  ASSERT_TRUE(c.read_bulk(out));
  EXPECT_EQ(out.view(), "end");
  EXPECT_EQ(c.pending(), 0u);
  EXPECT_FALSE(c.broken());
}

TEST(ReadBulkTest, AClosedOrGarbledStreamIsAConnectionError) {
  {
    // A payload cut short by a server that then says nothing: the read times out (op_timeout).
    FakeServer server({"$10\r\nshort"});
    RedisConnection c(parse_redis_url(server.url()), 2s, 300ms);
    c.append({"GET", "k"});
    ByteBuffer out;
    try {
      c.read_bulk(out);
      FAIL() << "no error";
    } catch (const StoreError& e) {
      EXPECT_EQ(e.code(), StoreError::Code::kConnection) << e.what();
    }
    EXPECT_TRUE(c.broken());
  }
  {
    FakeServer server({":12\r\n"});  // not a bulk string
    RedisConnection c(parse_redis_url(server.url()), 2s, 5s);
    c.append({"GET", "k"});
    ByteBuffer out;
    EXPECT_THROW(c.read_bulk(out), StoreError);
    EXPECT_TRUE(c.broken());
  }
}

}  // namespace
}  // namespace clupy::store
