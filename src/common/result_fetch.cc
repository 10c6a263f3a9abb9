#include "common/result_fetch.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <memory>
#include <stdexcept>

#include "common/dial.hpp"
#include "common/url.hpp"

namespace clupy::common {

boost::asio::awaitable<std::string> fetch_held_result(const ResultFetch& fetch) {
  DialOptions options;
  options.address = parse_master_url(fetch.address);
  options.role = fetch.role;
  options.token = fetch.token;
  options.max_frame_size = fetch.max_frame_size;
  options.timeout = fetch.timeout;
  Dialed dialed = co_await dial_master(options);
  std::shared_ptr<Connection> connection = dialed.connection;
  // The bytes may take a while on a busy network; the deadline bounds the whole exchange.
  auto executor = co_await boost::asio::this_coro::executor;
  boost::asio::steady_timer deadline(executor, fetch.timeout);
  auto timed_out = std::make_shared<bool>(false);
  std::weak_ptr<Connection> weak = connection;
  deadline.async_wait([weak, timed_out](boost::system::error_code ec) {
    if (ec) return;
    *timed_out = true;
    if (auto c = weak.lock()) c->close("fetch timed out");
  });
  wire::Envelope request;
  request.set_request_id(1);
  request.mutable_fetch_result()->set_result_id(fetch.result_id);
  connection->send(request);
  wire::Envelope reply;
  try {
    do {
      reply = co_await connection->read_frame();
    } while (!reply.has_result_bytes() && !reply.has_error());
  } catch (const std::exception& e) {
    connection->close("fetch failed");
    throw std::runtime_error("the data connection to " + fetch.address +
                             " broke: " + (*timed_out ? std::string("timed out") : e.what()));
  }
  deadline.cancel();
  connection->close("fetch done");
  if (reply.has_error())
    throw std::runtime_error("the server at " + fetch.address +
                             " says: " + reply.error().message());
  if (reply.result_bytes().has_failure())
    throw std::runtime_error("the server at " + fetch.address +
                             " has no such result: " + reply.result_bytes().failure().message());
  co_return std::move(*reply.mutable_result_bytes()->mutable_outcome());
}

}  // namespace clupy::common
