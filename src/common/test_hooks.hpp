// Test-only behaviour, part of the build information: compiled in only when the build has the
// CMake option CLUPY_TEST_HOOKS (on with CLUPY_BUILD_TESTS, which the test suite builds; a
// package built with -DCLUPY_BUILD_TESTS=OFF ignores these variables). Read once from the
// process's environment, at first use, and handed to the code that honours them; a process that
// honours one says so in its log (info).
//
//   CLUPY_TEST_PROTOCOL_MAJOR, _MINOR  announce this protocol version instead of the built one,
//                                      so that a test runs a peer of another version for real
//   CLUPY_TEST_PUSH_GATE               a client pushes its first large calls once this file exists
//   CLUPY_TEST_HELD_FETCH_GATE         a client fetches held results once this file exists
#pragma once

#include <optional>
#include <string>

namespace clupy::common {

struct TestHooks {
  std::optional<unsigned> protocol_major;
  std::optional<unsigned> protocol_minor;
  std::string push_gate;        // a file's path, or empty
  std::string held_fetch_gate;  // a file's path, or empty
};

// This process's hooks; all empty in a build without CLUPY_TEST_HOOKS.
const TestHooks& test_hooks();

}  // namespace clupy::common
