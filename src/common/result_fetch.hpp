// Fetching a held result (protocol 1.4, docs/protocol.md#held-results) from the data port of
// the server that holds it: dial, the usual handshake and token, one FetchResult, one
// ResultBytes. Used by clients (Future values) and servers (inputs of the tasks they run).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>

#include "clupy.pb.h"
#include "common/config.hpp"

namespace clupy::common {

struct ResultFetch {
  std::string address;  // the holder's data port, "host:port"
  std::uint64_t result_id = 0;
  wire::Role role = wire::ROLE_CLIENT;
  std::optional<std::string> token;
  std::size_t max_frame_size = kDefaultMaxFrameSize;
  Millis timeout{10'000};  // for the whole exchange
};

// The held outcome's bytes. Throws std::runtime_error saying why when the connection is
// refused, breaks or times out, or the holder no longer has the result.
boost::asio::awaitable<std::string> fetch_held_result(const ResultFetch& fetch);

}  // namespace clupy::common
