// `clupy top`: the cluster's facts in a terminal, refreshed (servers, busy slots, queued and
// running tasks, clients and their reservations), for machines without a browser. It reads the
// master's registry the way `clupy info` does, through any master URL the library accepts
// (clupy://, or zk:// to follow the elected one of several standby masters).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "clupy/cluster.hpp"

namespace clupy::client {

// One frame of `clupy top` for `status`, at most `width` columns wide (0: no limit).
std::string render_top_frame(const ClusterStatus& status, unsigned width);

// `clupy top [--master-url URL] [--token-file F] [--config F] [--interval 2s] [--frames N]
// [--once]`: on a terminal, redraws in place until interrupted (Ctrl-C or `q`) or N frames were
// drawn; otherwise prints frames one after another (--once: one frame without escape codes).
// Returns the exit code.
int top_command(const std::vector<std::string>& args);

}  // namespace clupy::client
