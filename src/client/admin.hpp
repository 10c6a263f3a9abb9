// One-shot administrative connections to the master (clupy info, clupy store): the options
// resolved the way ConnectOptions documents, and a blocking dial on a private io_context.
#pragma once

#include <boost/asio/io_context.hpp>

#include "clupy/cluster.hpp"
#include "common/dial.hpp"

namespace clupy::client {

// ConnectOptions over ./clupy.client.yaml (or options.config_file) over the defaults.
common::DialOptions admin_dial_options(const ConnectOptions& options);

// Connects and completes the handshake, blocking, on `io` (which must outlive the connection and
// not be running elsewhere). Throws like cluster_status().
common::Dialed dial_blocking(common::asio::io_context& io, const common::DialOptions& options);

}  // namespace clupy::client
