#include "common/test_hooks.hpp"

#include <cstdlib>

#include "common/log.hpp"

namespace clupy::common {
namespace {

[[maybe_unused]] std::string variable(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == 0) return {};
  logger("config")->info("test hook {}={} is honoured (a build with CLUPY_TEST_HOOKS)", name,
                         value);
  return value;
}

[[maybe_unused]] std::optional<unsigned> number(const char* name) {
  const std::string value = variable(name);
  if (value.empty()) return std::nullopt;
  return static_cast<unsigned>(std::strtoul(value.c_str(), nullptr, 10));
}

}  // namespace

const TestHooks& test_hooks() {
  static const TestHooks hooks = [] {
    TestHooks read;
#ifdef CLUPY_TEST_HOOKS
    read.protocol_major = number("CLUPY_TEST_PROTOCOL_MAJOR");
    read.protocol_minor = number("CLUPY_TEST_PROTOCOL_MINOR");
    read.push_gate = variable("CLUPY_TEST_PUSH_GATE");
    read.held_fetch_gate = variable("CLUPY_TEST_HELD_FETCH_GATE");
#endif
    return read;
  }();
  return hooks;
}

}  // namespace clupy::common
