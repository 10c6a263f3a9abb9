// `clupy --publish FILE`, `clupy --unpublish NAME`, `clupy services` (docs/services.md).
#pragma once

#include <string>

#include "clupy/cluster.hpp"

namespace clupy::client {

// Reads the service file, learns the program's exports (by starting it with
// CLUPY_DESCRIBE_EXPORTS=1), uploads the program and publishes the service; prints the URL.
// Returns the exit code; errors are thrown as clupy::Error with a message naming the problem.
int publish_command(const std::string& service_file, const ConnectOptions& options);
int unpublish_command(const std::string& name, const ConnectOptions& options);
int services_command(const ConnectOptions& options, bool json);

// The exports the program at `binary` describes, as JSON text. Throws clupy::ConfigError.
std::string describe_program_exports(const std::string& binary);

}  // namespace clupy::client
