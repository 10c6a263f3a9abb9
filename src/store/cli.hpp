// `clupy store ...`: the command-line face of the store. The clupy tool resolves StoreOptions
// (from the master, or flags) and hands the remaining arguments here.
#pragma once

#include <clupy/store.hpp>
#include <ostream>
#include <string>
#include <vector>

namespace clupy::store {

// args: the words after "store", e.g. {"put", "data.csv", "datasets/data.csv"}. Commands:
//   put LOCAL NAME | get NAME LOCAL | ls [PREFIX] | stat NAME | rm NAME | pin NAME | unpin NAME
// Returns the exit status: 0 done, 1 a store error (message on stderr), 2 bad usage.
// A progress bar is drawn on stderr for transfers of 8 MiB or more when stderr is a terminal.
int run_cli(std::vector<std::string> args, const StoreOptions& options);

// The same, writing to the given streams; `progress` forces the progress bar on or off.
int run_cli(std::vector<std::string> args, const StoreOptions& options, std::ostream& out,
            std::ostream& err, bool progress);

// The usage text.
const char* cli_usage();

}  // namespace clupy::store
