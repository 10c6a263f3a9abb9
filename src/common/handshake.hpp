// The opening exchange of every connection: versions both ways, then the token challenge.
// docs/protocol.md spells out the messages.
//
//   connector                          acceptor
//   Hello{build, role, nonce_c}   ->
//                                 <-   Challenge{build, nonce_s, auth_required} | Refused
//   AuthProof{mac_c}              ->   (when auth_required)
//                                 <-   Accepted{mac_s} | Refused
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>

#include "clupy.pb.h"
#include "common/config.hpp"
#include "common/connection.hpp"
#include "common/version.hpp"

namespace clupy::common {

struct PeerIdentity {
  wire::BuildInfo build;
  wire::Role role = wire::ROLE_UNSPECIFIED;
  std::string name;                // host and pid, as the peer describes itself
  std::string session_id;          // the acceptor's id for this connection
  wire::ClusterServices services;  // connector side: what the master announced
  std::int64_t fencing_token = 0;  // connector side: the master's election token (0: none)
};

struct AcceptorAuth {
  std::optional<std::string> token;     // nullopt: authentication is off (loopback only)
  std::string local_name;               // "master", used in messages
  wire::ClusterServices services = {};  // announced in Accepted
  std::int64_t fencing_token = 0;       // announced in Accepted: this master's election token
  // Announced in Challenge; nullopt: announced_protocol().
  std::optional<ProtocolVersion> protocol = std::nullopt;
};

struct ConnectorAuth {
  std::optional<std::string> token;
  // With a token, a master that does not ask for it is accepted only on loopback (where
  // allow_no_auth is legal); elsewhere it would be a downgrade by a man in the middle.
  bool master_is_loopback = true;
  wire::Role role = wire::ROLE_CLIENT;
  std::string local_name;
  // Announced in Hello; nullopt: announced_protocol().
  std::optional<ProtocolVersion> protocol = std::nullopt;
};

// Thrown by accept_handshake; the connection has been sent a Refused when possible. what() is
// the reason for the log.
class HandshakeRejected : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Acceptor side. Throws HandshakeRejected or ConnectionClosed.
asio::awaitable<PeerIdentity> accept_handshake(Connection& connection, const AcceptorAuth& auth);

// Connector side. Throws clupy::HandshakeError with a message for the user (version mismatch
// naming both versions, wrong or missing token), or ConnectionClosed.
asio::awaitable<PeerIdentity> connect_handshake(Connection& connection, const ConnectorAuth& auth);

// "host:pid", how a process names itself in Hello.
std::string self_description();

}  // namespace clupy::common
