// `clupy store ...`: the command-line face of the store. The clupy tool resolves StoreOptions
// (from the master, or flags) and hands the remaining arguments here.
#pragma once

#include <clupy/cluster.hpp>
#include <clupy/store.hpp>
#include <functional>
#include <optional>
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

// Where `clupy store` finds the store, from the flags among its words:
//   --master-url URL, --token-file PATH, --config PATH  ask that master (ConnectOptions' defaults
//                                                       apply to what is not given)
//   --redis-url URL [--key-prefix P]                    use this Redis directly
// Flags may come anywhere, as `--flag value` or `--flag=value`; `--` ends them.
struct CliTarget {
  ConnectOptions master;
  std::string redis_url;             // non-empty: --redis-url, the master is not asked
  std::string key_prefix;            // with --redis-url; empty: the default
  std::vector<std::string> command;  // the words left: {"put", LOCAL, NAME} and so on
};

// Fills `out`; returns the usage error, if any.
std::optional<std::string> parse_cli_target(const std::vector<std::string>& args, CliTarget& out);

// How the CLI learns the store from a master (detail::fetch_store_options in the program).
using StoreResolver = std::function<std::optional<StoreOptions>(const ConnectOptions&)>;

// `clupy store ...` with its flags: checks the command, finds the store (--redis-url, else
// CLUPY_STORE_URL and friends when set, as in a task, else `ask_master`) and runs it. Exit
// status as run_cli; a master that cannot be reached or has no store is status 1.
int run_cli_with_flags(std::vector<std::string> args, const StoreResolver& ask_master,
                       std::ostream& out, std::ostream& err, bool progress);

// The `clupy store` entry point of the clupy tool: run_cli_with_flags() on stdout and stderr,
// asking the master through detail::fetch_store_options (src/store/cli_master.cc).
int run_cli_with_master(std::vector<std::string> args);

}  // namespace clupy::store
