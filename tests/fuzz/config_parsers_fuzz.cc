// The YAML configuration parsers (master, server, client; with their coordination and store
// sections) against any text. What must hold: a file either parses into a configuration that
// validate() accepts or rejects with clupy::ConfigError (whose message names the source), never
// another exception or a crash. yaml-cpp's own exceptions are part of what is checked: they
// must come out as ConfigError.
#include <cstdlib>
#include <string>

#include "clupy/errors.hpp"
#include "common/config.hpp"

namespace {

template <class Parse>
void check(Parse parse, const std::string& yaml) {
  try {
    auto config = parse(yaml, "fuzz.yaml");
    if constexpr (requires { clupy::common::validate(config); }) clupy::common::validate(config);
  } catch (const clupy::ConfigError& e) {
    if (std::string(e.what()).empty()) std::abort();  // every refusal says why
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string yaml(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      check(clupy::common::parse_master_config, yaml);
      break;
    case 1:
      check(clupy::common::parse_server_config, yaml);
      break;
    case 2:
      check(clupy::common::parse_client_config, yaml);
      break;
    case 3:
      try {
        clupy::common::parse_duration(yaml);
      } catch (const clupy::ConfigError&) {
      }
      try {
        clupy::common::parse_size(yaml);
      } catch (const clupy::ConfigError&) {
      }
      break;
  }
  return 0;
}
