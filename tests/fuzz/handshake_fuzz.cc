// The opening exchange of a connection against a peer that sends anything: the acceptor side
// (what a master or server runs for every incoming connection) and the connector side (what a
// client or server runs against the master it dials), over a real local socket pair. The input
// is one byte of options (bit 0: the acceptor side, bit 1: with a token, bit 2: the master is on
// loopback) and the byte stream the fuzzed peer sends; seeds are real handshake frames.
// What must hold: the handshake ends with a peer identity or with HandshakeRejected /
// HandshakeError / ConnectionClosed, never another exception or a crash; with a token it never
// accepts a peer that did not prove it (the peer cannot know the fresh nonce's MAC), and a
// connector never accepts an unauthenticated master on a non-loopback address.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/write.hpp>
#include <cstdlib>
#include <exception>
#include <string>

#include "clupy.pb.h"
#include "clupy/errors.hpp"
#include "common/connection.hpp"
#include "common/handshake.hpp"

namespace {

namespace asio = boost::asio;
using clupy::common::Connection;
using clupy::common::PeerIdentity;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool acceptor = (data[0] & 1) != 0;
  const bool with_token = (data[0] & 2) != 0;
  const bool loopback = (data[0] & 4) != 0;
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);

  asio::io_context io;
  clupy::common::local_socket ours(io), theirs(io);
  asio::local::connect_pair(ours, theirs);
  // The peer's bytes are all written at once and its side then closed for writing: the
  // handshake reads what it needs and meets the end of the stream after that.
  asio::write(theirs, asio::buffer(stream));
  theirs.shutdown(asio::socket_base::shutdown_send);

  auto connection = std::make_shared<Connection>(clupy::common::Transport(std::move(ours)),
                                                 clupy::common::kHandshakeMaxFrameSize);
  std::optional<PeerIdentity> accepted;
  std::exception_ptr failure;
  auto record = [&](std::exception_ptr error, PeerIdentity peer) {
    if (error)
      failure = error;
    else
      accepted = std::move(peer);
  };
  const std::optional<std::string> token =
      with_token ? std::optional<std::string>("fuzz-cluster-token") : std::nullopt;
  // Both live until io.run() returns: the handshake coroutines keep references to them.
  clupy::common::AcceptorAuth acceptor_auth;
  acceptor_auth.token = token;
  acceptor_auth.local_name = "master";
  clupy::common::ConnectorAuth connector_auth;
  connector_auth.token = token;
  connector_auth.master_is_loopback = loopback;
  connector_auth.local_name = "fuzz-client";
  if (acceptor)
    asio::co_spawn(io, clupy::common::accept_handshake(*connection, acceptor_auth), record);
  else
    asio::co_spawn(io, clupy::common::connect_handshake(*connection, connector_auth), record);
  io.run();
  connection->close("fuzz input done");
  io.restart();
  io.run();

  if (accepted) {
    if (acceptor && with_token) std::abort();  // a peer without the token got through
    if (!acceptor && with_token && !loopback) std::abort();
    return 0;
  }
  if (!failure) std::abort();  // the handshake must end one way or the other
  try {
    std::rethrow_exception(failure);
  } catch (const clupy::common::HandshakeRejected&) {
  } catch (const clupy::HandshakeError&) {
  } catch (const clupy::common::ConnectionClosed&) {
  }
  return 0;
}
