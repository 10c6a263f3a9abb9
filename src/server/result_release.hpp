// When the results a server has gathered leave for the master. The master sends new tasks in
// answer to results, one message per batch of results; so while this server has plenty left to
// run, its results wait until they are as many as its unfinished tasks (half its work done) and
// each hop carries a batch instead of a task or two. They leave at once when the server runs out
// of work or has gathered `max_held`, and never later than `max_delay` after the first of them
// was gathered. Time is read from the Clock it is given. Not thread-safe: the server's
// io_context thread owns it.
#pragma once

#include <cstddef>
#include <optional>

#include "base/clock.hpp"

namespace clupy::server {

class ResultRelease {
 public:
  ResultRelease(const base::Clock& clock, base::Clock::duration max_delay, std::size_t max_held)
      : clock_(clock), max_delay_(max_delay), max_held_(max_held) {}

  // The batch holds `held` results (at least one) and `unfinished` tasks remain on this server.
  // nullopt: the batch leaves now (the caller sends it and calls sent()). Otherwise the time at
  // which it is due; asking again then answers nullopt.
  std::optional<base::Clock::time_point> due(std::size_t held, std::size_t unfinished);

  // The batch left (sent, or dropped with the connection): the next result starts a new one.
  void sent() { first_gathered_.reset(); }

 private:
  const base::Clock& clock_;
  const base::Clock::duration max_delay_;
  const std::size_t max_held_;
  std::optional<base::Clock::time_point> first_gathered_;  // of the batch now held
};

}  // namespace clupy::server
