// The protocol and build identity exchanged in every handshake.
#pragma once

#include <string>

namespace clupy::wire {
class BuildInfo;
}

namespace clupy::common {

// Bumped on any change that an older peer cannot understand; peers of different majors refuse
// each other. Minor versions add fields that older peers ignore, or features a peer uses only
// once the other side has announced a minor version that has them.
inline constexpr unsigned kProtocolMajor = 1;
// 1.1: fencing tokens, coordination service. 1.2: frame attachments. 1.3: dependencies,
// services, futures as arguments. 1.4: held results (results kept where they were made).
// 1.5: pushed calls (large calls go from the client straight to the server that runs them).
inline constexpr unsigned kProtocolMinor = 5;
// The first minor version whose peers read frame attachments (common/frame.hpp).
inline constexpr unsigned kAttachmentsMinor = 2;
// The first minor version whose masters hold a task until its inputs (TaskSpec.inputs, futures
// given as arguments) are done and put their values into the call. An older master would run
// the task with the inputs missing: a client resolves inputs itself before it sends to one.
inline constexpr unsigned kTaskInputsMinor = 3;
// The first minor version that keeps large results on the server that made them
// (TaskResult.held, Assignment.hold_threshold, FetchResult). A master asks a server to hold a
// client's results only when that client announced it; servers of older minors get no
// assignment whose inputs are held, and an older master never asks.
inline constexpr unsigned kHeldResultsMinor = 4;
// The first minor version that pushes large calls past the master (TaskSpec.pushed_call_size,
// CallTicket, PushedCall, PushedResult). A client pushes only to a master that offered it
// (JobOpened.push_threshold), and such a master places pushed tasks only on servers of 1.5.
inline constexpr unsigned kPushedCallsMinor = 5;

// libclupy's version ("0.1.0").
const char* library_version();

// Architecture, compiler, libstdc++ dual-ABI setting and glibc version of this build, e.g.
// "x86_64-linux-gnu gcc12 cxx11abi=1 glibc2.36". Differences are reported, not refused: they
// matter for shipped code, which checks them itself.
const std::string& abi_tag();

// A protocol version, as announced in a handshake.
struct ProtocolVersion {
  unsigned major = kProtocolMajor;
  unsigned minor = kProtocolMinor;
};

// What this process announces: the built version, or another one in a test's peer
// (common/test_hooks.hpp: CLUPY_TEST_PROTOCOL_MAJOR and _MINOR, in builds with test hooks).
ProtocolVersion announced_protocol();

// A BuildInfo announcing `protocol`, with this build's library version and ABI tag.
void fill_build_info(wire::BuildInfo& info, ProtocolVersion protocol = announced_protocol());

std::string describe(const wire::BuildInfo& info);

}  // namespace clupy::common
