// Progress of many futures, drawn while a program waits for them:
//
//   clupy::progress(results);                                        // until all complete
//   clupy::wait_all(results, std::chrono::minutes(5), clupy::show_progress);
//
// On a terminal, a bar redrawn in place (about 10 times a second): done/total, percentage, rate,
// ETA and failures, one line per function when futures of several functions are in flight.
// When the output is not a terminal (a pipe, a log file), a plain line every few seconds and one
// at the end. Nothing is drawn when quiet (ProgressOptions::quiet, or CLUPY_PROGRESS=off in the
// environment). The display is made by the waiting thread; results keep arriving meanwhile.
#pragma once

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "clupy/future.hpp"

namespace clupy {

struct ProgressOptions {
  std::string title{};         // before the bar (default: the function's name, or "tasks")
  std::FILE* output = stdout;  // where to draw; a terminal gets the bar, anything else lines
  // How often to redraw: 0 picks 100 ms on a terminal and 5 s otherwise.
  std::chrono::milliseconds interval{0};
  bool quiet = false;  // draw nothing (CLUPY_PROGRESS=off does the same for every display)
  // Draw as on a terminal even when `output` is not one, or as lines even when it is; unset:
  // ask isatty(output).
  std::optional<bool> terminal{};
};

// The tag that makes wait_all draw progress.
struct ShowProgress {
  ProgressOptions options;
};
inline const ShowProgress show_progress{};

namespace detail {
// Draws progress for `states` until each has completed or `deadline` passes; true if all
// completed. The states must live until it returns (the caller's futures hold them).
// Implemented in src/client/progress.cc.
bool wait_with_progress(const std::vector<FutureStateBase*>& states,
                        std::chrono::steady_clock::time_point deadline,
                        const ProgressOptions& options);
}  // namespace detail

// Blocks until every future in `futures` (any range of Future<T>, or several ranges' worth
// collected into one) has completed or `timeout` passes, drawing progress meanwhile. True if
// all completed, as wait_all(futures, timeout). Throws FutureStateError for an invalid future.
template <class Range, class Rep, class Period>
bool wait_all(const Range& futures, std::chrono::duration<Rep, Period> timeout,
              const ShowProgress& show) {
  std::vector<detail::FutureStateBase*> states;
  for (const auto& f : futures) states.push_back(detail::FutureAccess::state(f).get());
  return detail::wait_with_progress(states, detail::deadline_after(timeout), show.options);
}

// Draws progress until every future in `futures` has completed (no time limit); returns when
// they have, with their callbacks run, as wait_all does.
template <class Range>
void progress(const Range& futures, ProgressOptions options = {}) {
  std::vector<detail::FutureStateBase*> states;
  for (const auto& f : futures) states.push_back(detail::FutureAccess::state(f).get());
  detail::wait_with_progress(states, std::chrono::steady_clock::time_point::max(), options);
}

}  // namespace clupy
