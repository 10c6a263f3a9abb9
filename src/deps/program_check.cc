#include "deps/program_check.hpp"

#include <link.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "deps/command.hpp"
#include "deps/debian.hpp"
#include "deps/elf_needs.hpp"

namespace clupy::deps {

namespace {

namespace fs = std::filesystem;

// deb-version(7): letters sort before non-letters, '~' before everything, even the end.
int order(char c) {
  if (std::isdigit(static_cast<unsigned char>(c))) return 0;
  if (std::isalpha(static_cast<unsigned char>(c))) return c;
  if (c == '~') return -1;
  if (c != '\0') return c + 256;
  return 0;
}

int compare_part(const std::string& left, const std::string& right) {
  const char* a = left.c_str();
  const char* b = right.c_str();
  auto digit = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; };
  while (*a != '\0' || *b != '\0') {
    int first_diff = 0;
    while ((*a != '\0' && !digit(*a)) || (*b != '\0' && !digit(*b))) {
      const int ac = order(*a);
      const int bc = order(*b);
      if (ac != bc) return ac - bc;
      if (*a != '\0') ++a;
      if (*b != '\0') ++b;
    }
    while (*a == '0') ++a;
    while (*b == '0') ++b;
    while (digit(*a) && digit(*b)) {
      if (first_diff == 0) first_diff = *a - *b;
      ++a;
      ++b;
    }
    if (digit(*a)) return 1;
    if (digit(*b)) return -1;
    if (first_diff != 0) return first_diff;
  }
  return 0;
}

struct Parsed {
  long epoch = 0;
  std::string upstream;
  std::string revision;
};

Parsed parse(const std::string& version) {
  Parsed p;
  std::string rest = version;
  if (auto colon = rest.find(':'); colon != std::string::npos) {
    p.epoch = std::strtol(rest.substr(0, colon).c_str(), nullptr, 10);
    rest = rest.substr(colon + 1);
  }
  if (auto dash = rest.rfind('-'); dash != std::string::npos) {
    p.revision = rest.substr(dash + 1);
    rest = rest.substr(0, dash);
  }
  p.upstream = rest;
  return p;
}

std::string without_arch(const std::string& package) {
  return package.substr(0, package.find(':'));
}

// dpkg registers files under the paths the packages ship; with a merged /usr the loader may
// report the other spelling of the same file.
std::vector<std::string> path_spellings(const std::string& path) {
  std::vector<std::string> out{path};
  if (path.rfind("/usr/lib/", 0) == 0) out.push_back(path.substr(4));
  if (path.rfind("/lib/", 0) == 0 || path.rfind("/lib64/", 0) == 0) out.push_back("/usr" + path);
  return out;
}

// Package owning each path, with one dpkg-query -S for all of them.
std::map<std::string, std::string> owners_of(const std::vector<std::string>& paths) {
  std::map<std::string, std::string> spelled_as;  // spelling -> the path asked about
  std::vector<std::string> argv{"dpkg-query", "-S"};
  for (const auto& path : paths)
    for (const auto& spelling : path_spellings(path)) {
      spelled_as[spelling] = path;
      argv.push_back(spelling);
    }
  std::map<std::string, std::string> owners;
  if (argv.size() == 2) return owners;
  std::string out;
  run_query(argv, out);  // exits 1 when some path has no owner; the rest are still listed
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    const auto sep = line.find(": ");
    if (sep == std::string::npos) continue;
    std::string package = line.substr(0, sep);
    if (package.find(',') != std::string::npos) continue;  // a directory shared by packages
    auto asked = spelled_as.find(line.substr(sep + 2));
    if (asked != spelled_as.end()) owners.emplace(asked->second, package);
  }
  return owners;
}

// Installed versions of every package, with one dpkg-query -W.
std::map<std::string, std::string> installed_versions() {
  std::string out;
  run_query({"dpkg-query", "-W", "-f=${binary:Package}|${db:Status-Abbrev}|${Version}\\n"}, out);
  std::map<std::string, std::string> versions;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    const auto first = line.find('|');
    const auto second = line.find('|', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    if (line.compare(first + 1, 2, "ii") != 0) continue;
    const std::string package = line.substr(0, first);
    versions[package] = line.substr(second + 1);
    versions.emplace(without_arch(package), line.substr(second + 1));
  }
  return versions;
}

std::string version_of(const std::map<std::string, std::string>& versions,
                       const std::string& package) {
  auto it = versions.find(package);
  if (it == versions.end()) it = versions.find(without_arch(package));
  return it == versions.end() ? "" : it->second;
}

// The file each soname is loaded from in this process.
std::map<std::string, std::string> loaded_libraries() {
  std::map<std::string, std::string> loaded;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        auto& out = *static_cast<std::map<std::string, std::string>*>(data);
        if (info->dlpi_name == nullptr || info->dlpi_name[0] == '\0') return 0;
        const std::string path = info->dlpi_name;
        out.emplace(fs::path(path).filename().string(), path);
        std::error_code ec;
        const auto real = fs::canonical(path, ec);
        if (!ec) out.emplace(real.filename().string(), path);
        return 0;
      },
      &loaded);
  return loaded;
}

// The base of a soname without its major version: libfoo.so.2 -> libfoo.so.
std::string soname_base(const std::string& soname) {
  const auto so = soname.find(".so");
  return so == std::string::npos ? soname : soname.substr(0, so + 3);
}

// "size|modification time" of a file, "-" when it cannot be read: a cache key's part.
std::string file_stamp(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return "-";
  const auto time = fs::last_write_time(path, ec);
  if (ec) return "-";
  return std::to_string(size) + "|" + std::to_string(time.time_since_epoch().count());
}

// What `read` returns, remembered in ${XDG_CACHE_HOME:-~/.cache}/clupy/KIND/ under the SHA-256
// of `key`, which must name everything the answer depends on. Without a usable cache folder it
// reads every time; a file that cannot be written only means reading again next time.
template <class Message, class Read>
Message remembered(const char* kind, const std::string& key, Read read) {
  std::string folder;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg == '/')
    folder = std::string(xdg) + "/clupy/" + kind;
  else if (const char* home = std::getenv("HOME"); home != nullptr && *home == '/')
    folder = std::string(home) + "/.cache/clupy/" + kind;
  if (folder.empty()) return read();
  const std::string file = folder + "/" + base::to_hex(base::sha256(key));
  {
    std::ifstream in(file, std::ios::binary);
    Message cached;
    if (in && cached.ParseFromIstream(&in)) return cached;
  }
  Message fresh = read();
  std::error_code ec;
  fs::create_directories(folder, ec);
  const std::string staging = file + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(staging, std::ios::binary | std::ios::trunc);
    if (!out || !fresh.SerializeToOstream(&out)) return fresh;
  }
  fs::rename(staging, file, ec);
  if (ec) fs::remove(staging, ec);
  return fresh;
}

}  // namespace

std::optional<std::string> loaded_library_path(const std::string& soname) {
  const auto loaded = loaded_libraries();
  if (auto it = loaded.find(soname); it != loaded.end()) return it->second;
  // Loaded under another file name (a versioned file a link pointed to): its DT_SONAME says.
  for (const auto& [name, path] : loaded) {
    try {
      if (read_elf_dependencies(path).soname == soname) return path;
    } catch (const std::exception&) {
      // Not an ELF file we can read (the vDSO has no file): not it.
    }
  }
  return std::nullopt;
}

int compare_debian_versions(const std::string& a, const std::string& b) {
  const Parsed left = parse(a);
  const Parsed right = parse(b);
  if (left.epoch != right.epoch) return left.epoch < right.epoch ? -1 : 1;
  if (int c = compare_part(left.upstream, right.upstream); c != 0) return c;
  return compare_part(left.revision, right.revision);
}

wire::ProgramNeeds read_program_needs(const std::string& path) {
  const ElfDependencies elf = read_elf_dependencies(path);
  const auto loaded = loaded_libraries();
  wire::ProgramNeeds needs;
  std::vector<std::string> paths;
  for (const auto& soname : elf.needed) {
    auto* library = needs.add_libraries();
    library->set_soname(soname);
    if (auto it = loaded.find(soname); it != loaded.end()) {
      library->set_path(it->second);
      paths.push_back(it->second);
    }
    if (auto it = elf.version_needs.find(soname); it != elf.version_needs.end())
      for (const auto& version : it->second) library->add_versions(version);
  }
  const auto owners = owners_of(paths);
  const auto versions =
      owners.empty() ? std::map<std::string, std::string>{} : installed_versions();
  for (auto& library : *needs.mutable_libraries()) {
    auto owner = owners.find(library.path());
    if (owner == owners.end()) continue;
    library.set_package(owner->second);
    library.set_package_version(version_of(versions, owner->second));
  }
  return needs;
}

wire::ProgramNeeds read_program_needs_cached(const std::string& path,
                                             const std::string& image_sha256) {
  std::string key = base::to_hex(image_sha256) + "|" + file_stamp("/var/lib/dpkg/status");
  for (const auto& [soname, file] : loaded_libraries()) key += "|" + soname + "=" + file;
  return remembered<wire::ProgramNeeds>("needs", key, [&] { return read_program_needs(path); });
}

wire::ServerOffer read_server_offer(const std::vector<std::string>& extra_directories) {
  std::map<std::string, std::string> paths;  // soname -> file, the first the loader would take
  // Symbol versions are read for the C and C++ runtime, and for shipped libraries.
  std::set<std::string> with_versions = {"libc.so.6", "libm.so.6", "libstdc++.so.6",
                                         "libgcc_s.so.1"};
  for (const auto& directory : extra_directories) {
    std::error_code ec;
    if (directory.empty()) continue;
    for (const auto& entry : fs::directory_iterator(directory, ec)) {
      const std::string soname = entry.path().filename().string();
      if (paths.emplace(soname, entry.path().string()).second) with_versions.insert(soname);
    }
  }
  // What the server itself loaded (libclupy among them) its workers find as well.
  for (const auto& [soname, file] : loaded_libraries()) paths.emplace(soname, file);
  std::string cache;
  run_query({"ldconfig", "-p"}, cache);
  if (cache.empty()) run_query({"/sbin/ldconfig", "-p"}, cache);
  std::istringstream lines(cache);
  // "\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1"; the native ABI only.
#if defined(__x86_64__)
  const std::string native = "x86-64";
#elif defined(__aarch64__)
  const std::string native = "AArch64";
#else
  const std::string native;
#endif
  for (std::string line; std::getline(lines, line);) {
    const auto arrow = line.find(" => ");
    const auto paren = line.find(" (");
    if (arrow == std::string::npos || paren == std::string::npos) continue;
    const std::string abi = line.substr(paren + 2, line.find(')', paren) - paren - 2);
    if (!native.empty() && abi.find(native) == std::string::npos) continue;
    const auto start = line.find_first_not_of(" \t");
    paths.emplace(line.substr(start, paren - start), line.substr(arrow + 4));
  }
  std::vector<std::string> files;
  for (const auto& [soname, file] : paths) files.push_back(file);
  const auto owners = owners_of(files);
  const auto versions = installed_versions();
  wire::ServerOffer offer;
  for (const auto& [soname, file] : paths) {
    auto* library = offer.add_libraries();
    library->set_soname(soname);
    if (auto owner = owners.find(file); owner != owners.end()) {
      library->set_package(owner->second);
      library->set_package_version(version_of(versions, owner->second));
    }
    if (with_versions.contains(soname)) {
      try {
        for (const auto& version : read_elf_dependencies(file).version_definitions)
          library->add_versions(version);
        library->set_versions_known(true);
      } catch (const std::exception&) {
        // Unreadable: its symbol versions are not compared (the soname still is).
      }
    }
  }
  return offer;
}

wire::ServerOffer read_server_offer_cached(const std::vector<std::string>& extra_directories) {
  std::string key = "dpkg " + file_stamp("/var/lib/dpkg/status") + "|ld.so.cache " +
                    file_stamp("/etc/ld.so.cache");
  for (const auto& [soname, file] : loaded_libraries()) key += "|" + soname + "=" + file;
  for (const auto& directory : extra_directories) {
    std::error_code ec;
    if (directory.empty()) continue;
    key += "|dir " + directory;
    std::vector<std::string> entries;
    for (const auto& entry : fs::directory_iterator(directory, ec))
      entries.push_back(entry.path().filename().string() + "=" + file_stamp(entry.path()));
    std::sort(entries.begin(), entries.end());  // directory order is the filesystem's
    for (const auto& entry : entries) key += "|" + entry;
  }
  return remembered<wire::ServerOffer>("offer", key,
                                       [&] { return read_server_offer(extra_directories); });
}

std::vector<wire::ProgramDifference> compare_program(const wire::ProgramNeeds& needs,
                                                     const wire::ServerOffer& offer) {
  std::map<std::string, const wire::OfferedLibrary*> offered;
  for (const auto& library : offer.libraries()) offered.emplace(library.soname(), &library);
  std::vector<wire::ProgramDifference> out;
  auto add = [&](const std::string& soname, bool fatal, std::string text) {
    auto& d = out.emplace_back();
    d.set_soname(soname);
    d.set_fatal(fatal);
    d.set_text(std::move(text));
  };
  for (const auto& need : needs.libraries()) {
    auto it = offered.find(need.soname());
    if (it == offered.end()) {
      std::string other;
      for (const auto& [soname, library] : offered)
        if (soname_base(soname) == soname_base(need.soname()))
          other += (other.empty() ? "" : ", ") + soname;
      add(need.soname(), true,
          need.soname() + " is missing" +
              (other.empty() ? "" : " (it has " + other + ": a different major version)") +
              (need.package().empty()
                   ? ""
                   : "; here it comes from " + need.package() + " " + need.package_version()));
      continue;
    }
    const wire::OfferedLibrary& has = *it->second;
    if (has.versions_known()) {
      const std::set<std::string> defined(has.versions().begin(), has.versions().end());
      for (const auto& version : need.versions()) {
        if (defined.contains(version)) continue;
        const std::string newest = newest_version(defined, version_family(version));
        add(need.soname(), true,
            "needs " + version + " from " + need.soname() + "; the newest it has is " +
                (newest.empty() ? "none of that family" : newest));
      }
    }
    if (!need.package().empty() && !has.package().empty() && !need.package_version().empty() &&
        !has.package_version().empty() &&
        without_arch(need.package()) == without_arch(has.package()) &&
        compare_debian_versions(has.package_version(), need.package_version()) < 0)
      add(need.soname(), false,
          need.soname() + " comes from " + without_arch(need.package()) + " " +
              has.package_version() + ", older than " + need.package_version() + " here");
  }
  return out;
}

bool refuses(const std::vector<wire::ProgramDifference>& differences, bool strict) {
  return std::any_of(differences.begin(), differences.end(),
                     [&](const wire::ProgramDifference& d) { return d.fatal() || strict; });
}

}  // namespace clupy::deps
