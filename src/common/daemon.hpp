// The shape every daemon's main loop shares: run the io_context on this thread until it runs
// out of work; SIGINT or SIGTERM asks the daemon to stop (once), which lets run() return.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>

namespace clupy::common {

void run_until_stopped(boost::asio::io_context& io, const std::function<void()>& stop);

}  // namespace clupy::common
