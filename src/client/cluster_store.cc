// clupy::cluster_store(): a Store configured the way the master of this process's cluster says.
#include "store/cluster_link.hpp"

namespace clupy {

Store cluster_store() {
  std::optional<StoreOptions> options = detail::cluster_store_options();
  if (!options)
    throw StoreError(StoreError::Code::kNotConfigured,
                     "no cluster store is known to this process: call clupy::init(argc, argv) "
                     "first, and give the master a store: section in clupy.master.yaml (for "
                     "example `store: embedded`; see docs/store.md)");
  return Store(std::move(*options));
}

}  // namespace clupy
