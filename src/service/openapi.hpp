// The OpenAPI 3.1 document of a service, generated from its program's export descriptions
// (clupy/service.hpp, CLUPY_DESCRIBE_EXPORTS).
#pragma once

#include <string>
#include <vector>

#include "service/spec.hpp"

namespace clupy::services {

// The names of the exports `exports_json` describes. Throws clupy::ConfigError when it is not
// a description list.
std::vector<std::string> exported_names(const std::string& exports_json);

// Only the published entry points appear. Throws clupy::ConfigError like exported_names.
std::string openapi_document(const std::string& service, const std::string& version,
                             const std::string& exports_json,
                             const std::vector<std::string>& entry_points, AuthMode auth);

}  // namespace clupy::services
