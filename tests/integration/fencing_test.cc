// Fencing on the wire: a real `clupy --serve` process meets a scripted master (this test, speaking
// the real protocol) that presents election tokens. A server that has served a master with token 7
// refuses assignments and handshakes carrying a lower token, 0 included: they come from a deposed
// master. A batch too large for one frame is refused as a whole: every part carries the token.
#include <sys/stat.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_future.hpp>
#include <future>
#include <thread>

#include "cluster_fixture.hpp"
#include "common/connection.hpp"
#include "common/handshake.hpp"

namespace clupy::test {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using std::chrono::seconds;

// A master played by the test: accepts one connection at a time and answers its handshake with a
// chosen fencing token. Runs its io_context on a thread of its own.
class ScriptedMaster {
 public:
  // `max_frame_size` is what this master's connections split outgoing batches at.
  explicit ScriptedMaster(std::string auth_token,
                          std::size_t max_frame_size = common::kDefaultMaxFrameSize)
      : auth_token_(std::move(auth_token)),
        max_frame_size_(max_frame_size),
        work_(io_.get_executor()),
        acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        thread_([this] { io_.run(); }) {}
  ~ScriptedMaster() {
    asio::post(io_, [this] {
      if (connection_) connection_->close("test over");
      acceptor_.close();
    });
    work_.reset();
    io_.stop();
    thread_.join();
  }

  int port() const { return acceptor_.local_endpoint().port(); }

  // Accepts the next connection and completes the handshake, presenting `fencing_token`.
  void accept(std::int64_t fencing_token) {
    auto accepted = asio::co_spawn(io_, accept_one(fencing_token), asio::use_future);
    ASSERT_EQ(accepted.wait_for(seconds(30)), std::future_status::ready) << "no connection came";
    accepted.get();
  }

  // The next frame from the server; nullopt when the server closed the connection.
  std::optional<wire::Envelope> next(std::chrono::milliseconds timeout = seconds(10)) {
    auto frame = asio::co_spawn(io_, read_one(), asio::use_future);
    if (frame.wait_for(timeout) != std::future_status::ready) {
      ADD_FAILURE() << "the server sent nothing within " << timeout.count() << " ms";
      asio::post(io_, [c = connection_] { c->close("timeout"); });
      frame.wait();
      return std::nullopt;
    }
    return frame.get();
  }

  void send(const wire::Envelope& message) {
    asio::post(io_, [c = connection_, message] { c->send(message); });
  }

 private:
  asio::awaitable<void> accept_one(std::int64_t fencing_token) {
    tcp::socket socket = co_await acceptor_.async_accept(asio::use_awaitable);
    connection_ =
        std::make_shared<common::Connection>(common::Transport(std::move(socket)), max_frame_size_);
    const common::AcceptorAuth auth{auth_token_, "master", {}, fencing_token};
    co_await common::accept_handshake(*connection_, auth);
  }
  asio::awaitable<std::optional<wire::Envelope>> read_one() {
    try {
      co_return co_await connection_->read_frame();
    } catch (const common::ConnectionClosed&) {
      co_return std::nullopt;
    }
  }

  std::string auth_token_;
  std::size_t max_frame_size_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  std::shared_ptr<common::Connection> connection_;
  std::thread thread_;
};

// `tasks` assignments of an image the server does not have (running one means fetching it),
// each call `call_bytes` long.
wire::Envelope assignment(std::int64_t fencing_token, std::uint64_t first_task_id, int tasks = 1,
                          std::size_t call_bytes = 10) {
  wire::Envelope message;
  auto* assign = message.mutable_assign_tasks();
  assign->set_fencing_token(fencing_token);
  for (int i = 0; i < tasks; ++i) {
    auto* task = assign->add_tasks();
    task->set_task_id(first_task_id + i);
    task->set_image_sha256(std::string(32, '\x5a'));
    task->set_image_name("deposed");
    task->set_call(std::string(call_bytes, 'c'));
  }
  return message;
}

class FencingTest : public ClusterFixture {
 protected:
  // Starts a server and plays a master elected with `token` until the server has registered and
  // sent a heartbeat after taking an (empty) assignment stamped with that token.
  ChildProcess& serve(ScriptedMaster& master, std::int64_t token) {
    write_file(token_file(), "fencing-test-token\n");
    ::chmod(token_file().c_str(), 0600);
    port_ = master.port();
    ChildProcess& server = start_server("fenced");
    master.accept(token);
    auto hello = master.next();
    EXPECT_TRUE(hello && hello->has_register_server()) << read_file(dir_.file("fenced.log"));
    wire::Envelope registered;
    registered.mutable_server_registered()->set_server_id("fenced");
    master.send(registered);
    wire::Envelope current;
    current.mutable_assign_tasks()->set_fencing_token(token);
    master.send(current);
    auto beat = master.next();
    // What the machine offers programs may come first: a server sends it once it has read it
    // (at once when remembered from an earlier start).
    while (beat && beat->has_server_offer()) beat = master.next();
    EXPECT_TRUE(beat && beat->has_heartbeat()) << "token " << token << " must be served";
    return server;
  }

  // Reads until the server closes the connection; fails if it asked for the image of any task.
  void expect_nothing_run_until_closed(ScriptedMaster& master) {
    for (;;) {
      auto frame = master.next();
      if (!frame) break;
      ASSERT_FALSE(frame->has_fetch_image()) << "the server started a deposed master's task";
    }
  }
};

TEST_F(FencingTest, ServerRefusesAssignmentsAndHandshakesOfADeposedMaster) {
  ScriptedMaster master("fencing-test-token");
  ChildProcess& server = serve(master, 7);
  ASSERT_FALSE(HasFailure());

  // An assignment stamped with an older election's token: dropped, connection closed, nothing
  // fetched or run.
  master.send(assignment(5, 1));
  expect_nothing_run_until_closed(master);
  EXPECT_NE(read_file(dir_.file("fenced.log")).find("fencing token 5 is lower than 7"),
            std::string::npos)
      << read_file(dir_.file("fenced.log"));

  // The deposed master again, at the handshake: the server leaves without registering.
  master.accept(5);
  EXPECT_FALSE(master.next().has_value()) << "the server registered with a deposed master";

  // A later election's master is served.
  master.accept(9);
  auto again = master.next();
  ASSERT_TRUE(again && again->has_register_server()) << read_file(dir_.file("fenced.log"));
  EXPECT_TRUE(server.running());
}

TEST_F(FencingTest, SplitBatchOfADeposedMasterIsRefusedFromItsFirstPart) {
  // This master's connection splits batches at 64 KiB: 40 calls of 4000 bytes make 3 parts.
  ScriptedMaster master("fencing-test-token", 64u << 10);
  serve(master, 7);
  ASSERT_FALSE(HasFailure());

  master.send(assignment(5, 1, 40, 4000));
  expect_nothing_run_until_closed(master);
  const std::string log = read_file(dir_.file("fenced.log"));
  EXPECT_NE(log.find("fencing token 5 is lower than 7"), std::string::npos) << log;
  // The server saw a part, not the whole batch: the split happened, and its first part already
  // carried the deposed master's token (a part without one would have read "token 0").
  std::size_t at = log.find(": dropping ");
  ASSERT_NE(at, std::string::npos) << log;
  const int count = std::stoi(log.substr(at + std::string(": dropping ").size()));
  EXPECT_GT(count, 0);
  EXPECT_LT(count, 40) << "the batch was meant to arrive in parts";
}

TEST_F(FencingTest, TokenZeroIsRefusedOnceAHigherOneWasSeen) {
  ScriptedMaster master("fencing-test-token");
  ChildProcess& server = serve(master, 7);
  ASSERT_FALSE(HasFailure());

  // A master without an election token, on this connection and at a new handshake.
  master.send(assignment(0, 1));
  expect_nothing_run_until_closed(master);
  EXPECT_NE(read_file(dir_.file("fenced.log")).find("fencing token 0 is lower than 7"),
            std::string::npos)
      << read_file(dir_.file("fenced.log"));
  master.accept(0);
  EXPECT_FALSE(master.next().has_value()) << "the server registered with a token-less master";
  EXPECT_TRUE(server.running());
}

}  // namespace
}  // namespace clupy::test
