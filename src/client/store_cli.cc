// `clupy store` in the clupy tool: the CLI asks the master through the client runtime's link.
#include <unistd.h>

#include <iostream>

#include "store/cli.hpp"
#include "store/cluster_link.hpp"

namespace clupy::store {

int run_cli_with_master(std::vector<std::string> args) {
  return run_cli_with_flags(std::move(args), &detail::fetch_store_options, std::cout, std::cerr,
                            ::isatty(STDERR_FILENO) == 1);
}

}  // namespace clupy::store
