// Can this server start this program? The program side (what its image needs: DT_NEEDED
// sonames, the paths they load from here, the Debian packages owning them and their versions,
// the symbol versions required) and the server side (the sonames its loader finds, their
// packages' versions, the symbol versions its C and C++ runtime define) and the rules that
// compare them (docs/dependencies.md#programs):
// - a soname the server lacks, or a required symbol version it does not define: fatal, the
//   program cannot start there;
// - the same soname from an older version of the same package: a difference, fatal only when
//   the client asks for strict checks (dependency_check: error); same or newer is fine;
// - a different soname major (libfoo.so.2 here, only libfoo.so.1 there) is a missing soname.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "clupy.pb.h"

namespace clupy::deps {

// Debian version comparison (deb-version(7)), in process: <0, 0, >0. The tests hold it to
// dpkg --compare-versions; the master uses it on its io thread, where a process per comparison
// would stall dispatch.
int compare_debian_versions(const std::string& a, const std::string& b);

// The program image at `path`, with its needed libraries resolved as this process loaded them
// (dl_iterate_phdr), their owning packages and versions from dpkg. Libraries no package owns
// have an empty package. Throws std::runtime_error when the image cannot be read.
wire::ProgramNeeds read_program_needs(const std::string& path);
// The same, remembered in ${XDG_CACHE_HOME:-~/.cache}/clupy/needs/ per image (by its SHA-256),
// dpkg database (its status file's time and size) and the libraries this process loaded: asking
// dpkg which package owns a file reads every package's file list (a second or more on a busy
// machine), so a program run again skips it. Without a usable cache folder it reads every time.
wire::ProgramNeeds read_program_needs_cached(const std::string& path,
                                             const std::string& image_sha256);

// The file this process loaded for `soname` (dl_iterate_phdr: the path the loader opened, or a
// loaded file whose DT_SONAME is `soname`); nullopt when none is loaded.
std::optional<std::string> loaded_library_path(const std::string& soname);

// What this machine's loader offers: every soname in the ld.so cache (ldconfig -p), in
// `extra_directories` (the manifest's library folder) and loaded by this process (libclupy),
// their packages' versions, and the
// symbol versions that libc.so.6, libm.so.6, libstdc++.so.6 and libgcc_s.so.1 define.
wire::ServerOffer read_server_offer(const std::vector<std::string>& extra_directories);
// The same, remembered in ${XDG_CACHE_HOME:-~/.cache}/clupy/offer/ by the dpkg database and the
// loader's cache (their files' times and sizes), the libraries this process loaded and each extra
// directory's files: ldconfig and dpkg-query over every library took ~0.5 s of a server's start,
// before its first task could be checked.
wire::ServerOffer read_server_offer_cached(const std::vector<std::string>& extra_directories);

// The differences between what `needs` asks and `offer` gives, each saying what and why.
std::vector<wire::ProgramDifference> compare_program(const wire::ProgramNeeds& needs,
                                                     const wire::ServerOffer& offer);

// Whether any difference keeps the program from this server: always the fatal ones, and with
// `strict` (dependency_check: error) every one.
bool refuses(const std::vector<wire::ProgramDifference>& differences, bool strict);

}  // namespace clupy::deps
