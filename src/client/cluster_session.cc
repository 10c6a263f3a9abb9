// clupy::coord::cluster_session_options(): where this process's cluster keeps its coordination.
#include "coord/cluster_link.hpp"

namespace clupy::coord {

SessionOptions cluster_session_options() {
  std::optional<SessionOptions> options = clupy::detail::cluster_coordination_options();
  if (!options)
    throw CoordError(CoordError::Kind::kNotConfigured, "",
                     "no cluster coordination is known to this process: call "
                     "clupy::init(argc, argv) first, and give the master a coordination: section "
                     "in clupy.master.yaml (see docs/coordination.md)");
  return std::move(*options);
}

}  // namespace clupy::coord
