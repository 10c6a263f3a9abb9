#include "common/daemon.hpp"

#include <boost/asio/signal_set.hpp>

namespace clupy::common {

void run_until_stopped(boost::asio::io_context& io, const std::function<void()>& stop) {
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int) {
    if (!ec) stop();
  });
  io.run();
}

}  // namespace clupy::common
