#include "common/handshake.hpp"

#include <unistd.h>

#include "base/hex.hpp"
#include "clupy/errors.hpp"
#include "common/auth.hpp"
#include "common/log.hpp"
#include "common/version.hpp"

namespace clupy::common {

std::string self_description() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(::getpid());
}

namespace {

std::string version_mismatch_message(const std::string& acceptor_name,
                                     const wire::BuildInfo& acceptor,
                                     const wire::BuildInfo& connector) {
  return "protocol version mismatch: the " + acceptor_name + " speaks " + describe(acceptor) +
         ", this peer speaks " + describe(connector) +
         "; run the same major version of CluPy on every machine";
}

void refuse(Connection& connection, wire::Refused::Reason reason, const std::string& message) {
  wire::Envelope envelope;
  envelope.mutable_refused()->set_reason(reason);
  envelope.mutable_refused()->set_message(message);
  connection.send(envelope);
  connection.close_after_flush(message);
}

}  // namespace

asio::awaitable<PeerIdentity> accept_handshake(Connection& connection, const AcceptorAuth& auth) {
  wire::Envelope hello = co_await connection.read_frame();
  if (!hello.has_hello()) {
    refuse(connection, wire::Refused::PROTOCOL_ERROR, "expected Hello as the first frame");
    throw HandshakeRejected("first frame was not Hello (body case " +
                            std::to_string(hello.body_case()) + ")");
  }
  PeerIdentity peer;
  peer.build = hello.hello().build();
  peer.role = hello.hello().role();
  // Bounded and escaped once, here: every log line and listing that names the peer uses this.
  peer.name = printable(hello.hello().peer_name(), 128);

  wire::Envelope challenge;
  fill_build_info(*challenge.mutable_challenge()->mutable_build(),
                  auth.protocol.value_or(announced_protocol()));
  const wire::BuildInfo& mine = challenge.challenge().build();
  if (peer.build.protocol_major() != mine.protocol_major()) {
    std::string message = version_mismatch_message(auth.local_name, mine, peer.build);
    refuse(connection, wire::Refused::VERSION_MISMATCH, message);
    throw HandshakeRejected(message + " (peer " + peer.name + ")");
  }
  const std::string server_nonce = random_bytes(kNonceSize);
  challenge.mutable_challenge()->set_server_nonce(server_nonce);
  challenge.mutable_challenge()->set_auth_required(auth.token.has_value());
  connection.send(challenge);

  wire::Envelope accepted;
  peer.session_id = base::to_hex(random_bytes(8));
  accepted.mutable_accepted()->set_session_id(peer.session_id);
  *accepted.mutable_accepted()->mutable_services() = auth.services;
  accepted.mutable_accepted()->set_fencing_token(auth.fencing_token);
  if (auth.token) {
    wire::Envelope proof = co_await connection.read_frame();
    const std::string expected =
        client_proof(*auth.token, server_nonce, hello.hello().client_nonce());
    if (!proof.has_auth_proof() || !constant_time_equal(proof.auth_proof().mac(), expected)) {
      refuse(
          connection, wire::Refused::AUTH_FAILED,
          "authentication failed: the cluster token does not match the " + auth.local_name + "'s");
      throw HandshakeRejected("authentication failed for " + peer.name + " (wrong cluster token)");
    }
    accepted.mutable_accepted()->set_server_mac(
        server_proof(*auth.token, hello.hello().client_nonce(), server_nonce));
  }
  connection.send(accepted);
  // Large payloads travel as frame attachments only to a peer that reads them.
  if (peer.build.protocol_major() == kProtocolMajor &&
      peer.build.protocol_minor() >= kAttachmentsMinor)
    connection.enable_attachments();
  co_return peer;
}

asio::awaitable<PeerIdentity> connect_handshake(Connection& connection, const ConnectorAuth& auth) {
  wire::Envelope hello;
  fill_build_info(*hello.mutable_hello()->mutable_build(),
                  auth.protocol.value_or(announced_protocol()));
  const std::string client_nonce = random_bytes(kNonceSize);
  hello.mutable_hello()->set_client_nonce(client_nonce);
  hello.mutable_hello()->set_role(auth.role);
  hello.mutable_hello()->set_peer_name(auth.local_name.empty() ? self_description()
                                                               : auth.local_name);
  const wire::BuildInfo mine = hello.hello().build();
  connection.send(hello);

  wire::Envelope reply = co_await connection.read_frame();
  if (reply.has_refused())
    throw HandshakeError("the master refused the connection: " + reply.refused().message());
  if (!reply.has_challenge())
    throw HandshakeError("the master answered Hello with an unexpected message");
  PeerIdentity peer;
  peer.build = reply.challenge().build();
  if (peer.build.protocol_major() != mine.protocol_major())
    throw HandshakeError(version_mismatch_message("master", peer.build, mine));

  const std::string& server_nonce = reply.challenge().server_nonce();
  if (reply.challenge().auth_required()) {
    if (!auth.token)
      throw HandshakeError(
          "the master requires the cluster token and none was found: set CLUPY_TOKEN or "
          "CLUPY_TOKEN_FILE, or token_file in the YAML file (the master wrote it to its "
          "token_file, by default " +
          default_token_path() + ")");
    if (server_nonce.size() != kNonceSize)
      throw HandshakeError("the master sent a malformed challenge");
    wire::Envelope proof;
    proof.mutable_auth_proof()->set_mac(client_proof(*auth.token, server_nonce, client_nonce));
    connection.send(proof);
  } else if (auth.token && !auth.master_is_loopback) {
    throw HandshakeError(
        "the master did not ask for the cluster token; refusing an "
        "unauthenticated connection to a non-loopback address");
  }
  wire::Envelope outcome = co_await connection.read_frame();
  if (outcome.has_refused()) throw HandshakeError(outcome.refused().message());
  if (!outcome.has_accepted())
    throw HandshakeError("the master answered with an unexpected message");
  if (reply.challenge().auth_required() &&
      !constant_time_equal(outcome.accepted().server_mac(),
                           server_proof(*auth.token, client_nonce, server_nonce)))
    throw HandshakeError(
        "the master could not prove it knows the cluster token: refusing to talk to it");
  peer.session_id = outcome.accepted().session_id();
  peer.services = outcome.accepted().services();
  peer.fencing_token = outcome.accepted().fencing_token();
  peer.role = wire::ROLE_UNSPECIFIED;
  // Large payloads travel as frame attachments only to a peer that reads them.
  if (peer.build.protocol_major() == kProtocolMajor &&
      peer.build.protocol_minor() >= kAttachmentsMinor)
    connection.enable_attachments();
  co_return peer;
}

}  // namespace clupy::common
