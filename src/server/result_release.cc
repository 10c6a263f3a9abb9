#include "server/result_release.hpp"

namespace clupy::server {

std::optional<base::Clock::time_point> ResultRelease::due(std::size_t held,
                                                          std::size_t unfinished) {
  const auto now = clock_.now();
  if (!first_gathered_) first_gathered_ = now;
  const auto deadline = *first_gathered_ + max_delay_;
  if (unfinished == 0 || held >= unfinished || held >= max_held_ || now >= deadline)
    return std::nullopt;
  return deadline;
}

}  // namespace clupy::server
