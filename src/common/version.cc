#include "common/version.hpp"

#include <gnu/libc-version.h>

#include <string>

#include "clupy.pb.h"
#include "common/log.hpp"
#include "common/test_hooks.hpp"

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

ProtocolVersion announced_protocol() {
  ProtocolVersion version;
  const TestHooks& hooks = test_hooks();
  if (hooks.protocol_major) version.major = *hooks.protocol_major;
  if (hooks.protocol_minor) version.minor = *hooks.protocol_minor;
  return version;
}

void fill_build_info(wire::BuildInfo& info, ProtocolVersion protocol) {
  info.set_protocol_major(protocol.major);
  info.set_protocol_minor(protocol.minor);
  info.set_library_version(library_version());
  info.set_abi_tag(abi_tag());
}

std::string describe(const wire::BuildInfo& info) {
  return "protocol " + std::to_string(info.protocol_major()) + "." +
         std::to_string(info.protocol_minor()) + " (libclupy " +
         printable(info.library_version(), 64) + ", " + printable(info.abi_tag(), 128) + ")";
}

}  // namespace clupy::common
