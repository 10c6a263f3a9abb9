// A job's own dependencies on the client's side (docs/dependencies.md#a-jobs-own-packages and
// #libraries-shipped-from-the-client): clupy.client.dependency.yaml read at init, the libraries
// it ships read and hashed here and uploaded when the master asks, and the servers' progress
// with them shown to the program's user while init waits.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "client/runtime.hpp"
#include "clupy/errors.hpp"
#include "common/image_transfer.hpp"
#include "common/log.hpp"
#include "deps/elf_needs.hpp"
#include "deps/program_check.hpp"

namespace clupy::client {

namespace {
auto log() { return common::logger("client"); }

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// What the job brings, for messages: "packages", "libraries" or "packages and libraries".
std::string what_is_brought(const wire::DependencyReport& report) {
  bool packages = false;
  bool libraries = false;
  for (const auto& item : report.items())
    (item.kind() == wire::DependencyItem::LIBRARY ? libraries : packages) = true;
  if (packages && libraries) return "packages and libraries";
  return libraries ? "libraries" : "packages";
}
}  // namespace

void Runtime::load_job_packages(const common::ClientConfig& config) {
  std::string path = config.dependency_file;
  if (path.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists("clupy.client.dependency.yaml", ec)) return;
    path = "clupy.client.dependency.yaml";
  }
  const deps::ClientDependencies dependencies = deps::load_client_dependencies(path);
  if (embedded_) {
    if (!dependencies.packages.empty() || !dependencies.libraries.empty())
      log()->warn(
          "{}: the local cluster runs on this machine, which must have these packages and "
          "libraries itself; they are not installed or shipped for it",
          path);
    return;
  }
  for (const auto& p : dependencies.packages) {
    wire::DependencyPackage package;
    package.set_name(p.name);
    package.set_relation(p.relation);
    package.set_version(p.version);
    job_packages_.push_back(std::move(package));
  }
  try {
    load_job_libraries(dependencies.libraries);
  } catch (const ConfigError& e) {
    throw ConfigError(path + ": " + e.what());
  }
}

void Runtime::load_job_libraries(const std::vector<deps::ClientLibrary>& libraries) {
  for (const auto& wanted : libraries) {
    ShippedLibrary library;
    std::string name = wanted.name;
    if (!wanted.soname.empty()) {
      auto loaded = deps::loaded_library_path(wanted.soname);
      if (!loaded)
        throw ConfigError("libraries: " + wanted.soname +
                          " is not loaded by this program (ship a library it opens later by "
                          "its path)");
      library.source = *loaded;
    } else {
      library.source = wanted.path;
      if (name.empty()) {
        try {
          name = deps::read_elf_dependencies(wanted.path).soname;
        } catch (const std::exception& e) {
          throw ConfigError("libraries: " + wanted.path + ": " + e.what());
        }
        if (name.empty()) name = std::filesystem::path(wanted.path).filename().string();
      }
    }
    std::ifstream in(library.source, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (!in) throw ConfigError("libraries: cannot read " + library.source);
    library.bytes = std::move(bytes).str();
    if (std::any_of(job_libraries_.begin(), job_libraries_.end(),
                    [&](const auto& l) { return l.description.name() == name; }))
      throw ConfigError("libraries: two libraries are named " + name);
    library.description.set_name(name);
    library.description.set_sha256(base::sha256(library.bytes));
    library.description.set_size(library.bytes.size());
    log()->debug("shipping {} ({} bytes, sha256 {}) from {}", name, library.bytes.size(),
                 base::to_hex(library.description.sha256()).substr(0, 16), library.source);
    job_libraries_.push_back(std::move(library));
  }
  // A library the job ships is on every server that takes its tasks (a server that cannot
  // fetch it gets none): the program check does not ask servers for it.
  if (needs_ && !job_libraries_.empty()) {
    auto* needed = needs_->mutable_libraries();
    needed->erase(std::remove_if(needed->begin(), needed->end(),
                                 [&](const wire::NeededLibrary& n) {
                                   return std::any_of(job_libraries_.begin(), job_libraries_.end(),
                                                      [&](const auto& l) {
                                                        return l.description.name() == n.soname();
                                                      });
                                 }),
                  needed->end());
  }
}

void Runtime::upload_libraries(const wire::LibraryUploadRequest& request) {
  // Called on the I/O thread, while init waits for JobOpened.
  for (const auto& sha256 : request.sha256()) {
    auto library = std::find_if(job_libraries_.begin(), job_libraries_.end(),
                                [&](const auto& l) { return l.description.sha256() == sha256; });
    if (library == job_libraries_.end()) continue;  // not ours: the master will say so
    const std::string& bytes = library->bytes;
    std::size_t offset = 0;
    do {
      const std::size_t size = std::min(common::kImageChunkSize, bytes.size() - offset);
      wire::Envelope chunk;
      auto* c = chunk.mutable_image_chunk();
      c->set_image_sha256(sha256);
      c->set_offset(offset);
      c->set_data(bytes.data() + offset, size);
      offset += size;
      c->set_last(offset == bytes.size());
      connection_->send(chunk);
    } while (offset < bytes.size());
    log()->info("uploaded {} ({} bytes) to the master", library->description.name(), bytes.size());
  }
  last_package_progress_ms_ = steady_ms();
}

std::string Runtime::shipping_hint(const wire::ProgramVerdicts& verdicts) {
  std::set<std::string> sonames;
  for (const auto& server : verdicts.servers())
    for (const auto& difference : server.differences())
      // Missing and owned by no package here (a packaged one is better brought as a package).
      if (difference.fatal() && difference.text() == difference.soname() + " is missing" &&
          deps::loaded_library_path(difference.soname()))
        sonames.insert(difference.soname());
  if (sonames.empty()) return "";
  std::string hint =
      "\nthis machine has them: to ship them with the job, add to clupy.client.dependency.yaml "
      "(with allow_client_libraries: true in the master's manifest):\nlibraries:";
  for (const auto& soname : sonames) hint += "\n  - soname: " + soname;
  return hint;
}

void Runtime::report_job_packages(const wire::JobPackagesState& state) {
  // Called on the I/O thread. Init may be waiting for these installs: it goes on waiting while
  // they progress, and the program's user sees what is happening (at most once a second per
  // server while an installer runs).
  const auto now = std::chrono::steady_clock::now();
  last_package_progress_ms_ = steady_ms();
  const auto& report = state.report();
  const std::string what = what_is_brought(report);
  if (!report.in_progress()) {
    package_progress_logged_.erase(state.server_id());
    if (report.satisfied()) {
      // How long the job's first task on it waited (init waits for every server).
      log()->info("server {} has this job's {} ({} ms after the job was opened)", state.server_id(),
                  what, steady_ms() - open_job_sent_ms_);
      return;
    }
    // Each failed item whole, with the installer's output tail: the program's user cannot look
    // at the server.
    std::string why;
    for (const auto& item : report.items())
      if (item.state() == wire::DependencyItem::FAILED)
        why += (why.empty() ? "" : "; ") + item.name() + ": " + item.detail();
    log()->warn("server {} cannot install this job's {} and gets none of its tasks: {}",
                state.server_id(), what, why.empty() ? report.summary() : why);
    return;
  }
  auto& last = package_progress_logged_[state.server_id()];
  if (now - last < std::chrono::seconds(1)) return;
  last = now;
  for (const auto& item : report.items())
    if (item.state() == wire::DependencyItem::INSTALLING) {
      log()->warn("server {} is installing this job's {}: {}{}", state.server_id(), what,
                  item.kind() == wire::DependencyItem::LIBRARY ? item.name() + ": " : "",
                  item.detail());
      return;
    }
}

}  // namespace clupy::client
