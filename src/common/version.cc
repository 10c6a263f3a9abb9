#include "common/version.hpp"

#include <gnu/libc-version.h>

#include <cstdlib>
#include <string>

#include "clupy.pb.h"
#include "common/log.hpp"

namespace clupy::common {

const char* library_version() { return CLUPY_VERSION_STRING; }

const std::string& abi_tag() {
  static const std::string tag = [] {
    std::string arch =
#if defined(__x86_64__)
        "x86_64";
#elif defined(__aarch64__)
        "aarch64";
#else
        "unknown-arch";
#endif
    std::string compiler =
#if defined(__clang__)
        "clang" + std::to_string(__clang_major__);
#elif defined(__GNUC__)
        "gcc" + std::to_string(__GNUC__);
#else
        "cc";
#endif
    return arch + "-linux-gnu " + compiler + " cxx11abi=" + std::to_string(_GLIBCXX_USE_CXX11_ABI) +
           " glibc" + gnu_get_libc_version();
  }();
  return tag;
}

void fill_build_info(wire::BuildInfo& info) {
  unsigned major = kProtocolMajor;
  if (const char* forced = std::getenv("CLUPY_TEST_PROTOCOL_MAJOR"); forced && *forced)
    major = static_cast<unsigned>(std::strtoul(forced, nullptr, 10));
  info.set_protocol_major(major);
  unsigned minor = kProtocolMinor;
  // Tests speak an older minor version to check that newer peers still talk to it.
  if (const char* forced = std::getenv("CLUPY_TEST_PROTOCOL_MINOR"); forced && *forced)
    minor = static_cast<unsigned>(std::strtoul(forced, nullptr, 10));
  info.set_protocol_minor(minor);
  info.set_library_version(library_version());
  info.set_abi_tag(abi_tag());
}

std::string describe(const wire::BuildInfo& info) {
  return "protocol " + std::to_string(info.protocol_major()) + "." +
         std::to_string(info.protocol_minor()) + " (libclupy " +
         printable(info.library_version(), 64) + ", " + printable(info.abi_tag(), 128) + ")";
}

}  // namespace clupy::common
