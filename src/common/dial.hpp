// Connecting to the master: resolve, TCP (+TLS) connect, handshake, all under one deadline.
// Shared by servers and clients.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <string>

#include "clupy.pb.h"
#include "common/config.hpp"
#include "common/connection.hpp"
#include "common/handshake.hpp"
#include "common/url.hpp"

namespace clupy::common {

struct DialOptions {
  MasterAddress address;
  wire::Role role = wire::ROLE_CLIENT;
  std::optional<std::string> token;
  TlsConfig tls;
  std::size_t max_frame_size = kDefaultMaxFrameSize;
  Millis timeout{5'000};
};

struct Dialed {
  std::shared_ptr<Connection> connection;  // handshake done; call start() next
  PeerIdentity master;
};

// Throws clupy::ConnectionError (unreachable, timed out, closed during the handshake; the
// message names the address) or clupy::HandshakeError (refused: version, token).
asio::awaitable<Dialed> dial_master(const DialOptions& options);

}  // namespace clupy::common
