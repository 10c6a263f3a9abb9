// The handshake over a real loopback TCP connection, both sides in this process.
#include "common/handshake.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdlib>
#include <future>

#include "clupy/errors.hpp"
#include "common/version.hpp"

namespace clupy::common {
namespace {

class HandshakeTest : public testing::Test {
 protected:
  void SetUp() override {
    tcp::acceptor acceptor(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket client(io_), server(io_);
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
    connector_ = std::make_shared<Connection>(Transport(std::move(client)), kDefaultMaxFrameSize);
    acceptor_ = std::make_shared<Connection>(Transport(std::move(server)), kDefaultMaxFrameSize);
  }

  template <class T>
  std::future<T> spawn(asio::awaitable<T> work) {
    return asio::co_spawn(io_, std::move(work), asio::use_future);
  }

  // Runs the io_context until both futures are ready.
  template <class A, class B>
  void run(std::future<A>& a, std::future<B>& b) {
    while (a.wait_for(std::chrono::seconds(0)) != std::future_status::ready ||
           b.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      if (io_.run_one_for(std::chrono::seconds(10)) == 0) FAIL() << "handshake stalled";
    }
  }

  asio::io_context io_;
  std::shared_ptr<Connection> connector_, acceptor_;
};

template <class T>
std::string error_message(std::future<T>& f) {
  try {
    f.get();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST_F(HandshakeTest, SameTokenSucceedsAndBothSidesLearnTheOthersBuild) {
  AcceptorAuth server_auth{std::string("secret"), "master"};
  ConnectorAuth client_auth;
  client_auth.token = "secret";
  client_auth.role = wire::ROLE_SERVER;
  auto accepted = spawn(accept_handshake(*acceptor_, server_auth));
  auto connected = spawn(connect_handshake(*connector_, client_auth));
  run(accepted, connected);
  PeerIdentity client_seen = accepted.get();
  PeerIdentity master_seen = connected.get();
  EXPECT_EQ(client_seen.role, wire::ROLE_SERVER);
  EXPECT_EQ(client_seen.build.protocol_major(), kProtocolMajor);
  EXPECT_EQ(client_seen.build.abi_tag(), abi_tag());
  EXPECT_EQ(master_seen.build.library_version(), library_version());
  EXPECT_EQ(master_seen.session_id, client_seen.session_id);
}

TEST_F(HandshakeTest, PeersOfProtocol12UseAttachments) {
  AcceptorAuth server_auth{std::string("secret"), "master"};
  ConnectorAuth client_auth;
  client_auth.token = "secret";
  EXPECT_FALSE(acceptor_->attachments_enabled());
  auto accepted = spawn(accept_handshake(*acceptor_, server_auth));
  auto connected = spawn(connect_handshake(*connector_, client_auth));
  run(accepted, connected);
  accepted.get();
  connected.get();
  EXPECT_TRUE(acceptor_->attachments_enabled());
  EXPECT_TRUE(connector_->attachments_enabled());
}

TEST_F(HandshakeTest, PeersOfProtocol11KeepPayloadsInsideTheirEnvelopes) {
  AcceptorAuth server_auth{std::string("secret"), "master"};
  server_auth.protocol = ProtocolVersion{kProtocolMajor, 1};
  ConnectorAuth client_auth;
  client_auth.token = "secret";
  client_auth.protocol = ProtocolVersion{kProtocolMajor, 1};
  auto accepted = spawn(accept_handshake(*acceptor_, server_auth));
  auto connected = spawn(connect_handshake(*connector_, client_auth));
  run(accepted, connected);
  EXPECT_EQ(accepted.get().build.protocol_minor(), 1u);
  EXPECT_EQ(connected.get().build.protocol_minor(), 1u);
  EXPECT_FALSE(acceptor_->attachments_enabled());
  EXPECT_FALSE(connector_->attachments_enabled());
}

TEST_F(HandshakeTest, WrongTokenIsRefusedOnBothSides) {
  AcceptorAuth server_auth{std::string("secret"), "master"};
  ConnectorAuth client_auth;
  client_auth.token = "guess";
  auto accepted = spawn(accept_handshake(*acceptor_, server_auth));
  auto connected = spawn(connect_handshake(*connector_, client_auth));
  run(accepted, connected);
  EXPECT_NE(error_message(accepted).find("wrong cluster token"), std::string::npos);
  EXPECT_NE(error_message(connected).find("authentication failed"), std::string::npos);
}

TEST_F(HandshakeTest, MissingTokenSaysWhereToGetOne) {
  AcceptorAuth server_auth{std::string("secret"), "master"};
  ConnectorAuth client_auth;
  auto accepted = spawn(accept_handshake(*acceptor_, server_auth));
  auto connected = spawn(connect_handshake(*connector_, client_auth));
  connected.wait_for(std::chrono::seconds(0));
  while (connected.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
    ASSERT_GT(io_.run_one_for(std::chrono::seconds(10)), 0u);
  const std::string message = error_message(connected);
  EXPECT_NE(message.find("CLUPY_TOKEN"), std::string::npos) << message;
  connector_->close("test over");
  while (accepted.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
    ASSERT_GT(io_.run_one_for(std::chrono::seconds(10)), 0u);
  EXPECT_NE(error_message(accepted), "");
}

TEST_F(HandshakeTest, MajorVersionMismatchIsRefusedNamingBothVersions) {
  AcceptorAuth server_auth{std::string("secret"), "master"};
  auto accepted = spawn(accept_handshake(*acceptor_, server_auth));
  // Coroutine lambdas take what they use as parameters: captures would die with the lambda.
  auto replied = spawn([](std::shared_ptr<Connection> peer) -> asio::awaitable<wire::Envelope> {
    wire::Envelope hello;
    fill_build_info(*hello.mutable_hello()->mutable_build());
    hello.mutable_hello()->mutable_build()->set_protocol_major(99);
    hello.mutable_hello()->set_client_nonce(std::string(32, 'n'));
    peer->send(hello);
    co_return co_await peer->read_frame();
  }(connector_));
  run(accepted, replied);
  wire::Envelope reply = replied.get();
  ASSERT_TRUE(reply.has_refused());
  EXPECT_EQ(reply.refused().reason(), wire::Refused::VERSION_MISMATCH);
  EXPECT_NE(reply.refused().message().find("protocol 99." + std::to_string(kProtocolMinor)),
            std::string::npos)
      << reply.refused().message();
  EXPECT_NE(reply.refused().message().find("protocol " + std::to_string(kProtocolMajor) + "."),
            std::string::npos)
      << reply.refused().message();
  EXPECT_NE(error_message(accepted).find("version mismatch"), std::string::npos);
}

TEST_F(HandshakeTest, FirstFrameOtherThanHelloIsRefused) {
  AcceptorAuth server_auth{std::string("secret"), "master"};
  auto accepted = spawn(accept_handshake(*acceptor_, server_auth));
  // Coroutine lambdas take what they use as parameters: captures would die with the lambda.
  auto replied = spawn([](std::shared_ptr<Connection> peer) -> asio::awaitable<wire::Envelope> {
    wire::Envelope early;
    early.mutable_registry_request();
    peer->send(early);
    co_return co_await peer->read_frame();
  }(connector_));
  run(accepted, replied);
  wire::Envelope reply = replied.get();
  ASSERT_TRUE(reply.has_refused());
  EXPECT_EQ(reply.refused().reason(), wire::Refused::PROTOCOL_ERROR);
  EXPECT_NE(error_message(accepted).find("not Hello"), std::string::npos);
}

TEST_F(HandshakeTest, AcceptorThatCannotProveTheTokenIsNotTrusted) {
  auto fake = spawn([](std::shared_ptr<Connection> impostor) -> asio::awaitable<int> {
    co_await impostor->read_frame();  // Hello
    wire::Envelope challenge;
    fill_build_info(*challenge.mutable_challenge()->mutable_build());
    challenge.mutable_challenge()->set_server_nonce(std::string(32, 's'));
    challenge.mutable_challenge()->set_auth_required(true);
    impostor->send(challenge);
    co_await impostor->read_frame();  // the proof, which the impostor cannot check
    wire::Envelope accepted;
    accepted.mutable_accepted()->set_server_mac(std::string(32, 'x'));
    impostor->send(accepted);
    co_return 0;
  }(acceptor_));
  ConnectorAuth client_auth;
  client_auth.token = "secret";
  auto connected = spawn(connect_handshake(*connector_, client_auth));
  run(fake, connected);
  EXPECT_NE(error_message(connected).find("could not prove"), std::string::npos);
}

TEST_F(HandshakeTest, UnauthenticatedMasterOffLoopbackIsRefusedByATokenHolder) {
  AcceptorAuth server_auth{std::nullopt, "master"};
  ConnectorAuth client_auth;
  client_auth.token = "secret";
  client_auth.master_is_loopback = false;
  auto accepted = spawn(accept_handshake(*acceptor_, server_auth));
  auto connected = spawn(connect_handshake(*connector_, client_auth));
  while (connected.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
    ASSERT_GT(io_.run_one_for(std::chrono::seconds(10)), 0u);
  EXPECT_NE(error_message(connected).find("refusing an unauthenticated"), std::string::npos);
}

}  // namespace
}  // namespace clupy::common
