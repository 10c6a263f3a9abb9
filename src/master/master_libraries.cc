// Libraries shipped from a job's client (docs/dependencies.md#libraries-shipped-from-the-client):
// the manifest's policy accepts or refuses them, the master stores them in its image store
// (content-addressed, verified; uploaded by the client only when the store lacks them, and
// pinned while the job is open), and servers are asked for them with the job's packages once
// they are all stored, fetching them as they fetch program images.
#include <algorithm>

#include "common/log.hpp"
#include "deps/manifest.hpp"
#include "master/master.hpp"

namespace clupy::master {

namespace {
auto log() { return common::logger("master"); }
constexpr int kMaxClientLibraries = 256;
}  // namespace

std::string Master::open_job_libraries(std::uint64_t session_id, Session& session,
                                       const wire::OpenJob& job,
                                       wire::JobPackagesRequest& request) {
  const deps::Manifest& manifest = manifest_->manifest();
  std::string names;
  for (const auto& library : job.libraries())
    names += (names.empty() ? "" : ", ") + common::printable(library.name(), 128);
  if (!manifest.allow_client_libraries)
    return "this master takes no libraries from jobs (allow_client_libraries: false): " + names +
           "; ask its operator to ship them in the dependency manifest's libraries: or to set "
           "allow_client_libraries: true";
  if (job.libraries_size() > kMaxClientLibraries)
    return "the job ships " + std::to_string(job.libraries_size()) + " libraries; at most " +
           std::to_string(kMaxClientLibraries);
  // Every library is checked before any upload starts: a refused job leaves nothing behind.
  std::set<std::string> seen;
  for (const auto& library : job.libraries()) {
    if (!deps::is_library_file_name(library.name()) || library.sha256().size() != 32)
      return "the job's libraries: '" + common::printable(library.name(), 128) +
             "' is not a library's file name with a SHA-256";
    if (!seen.insert(library.name()).second)
      return "the job's libraries: two are named " + library.name();
    if (library.size() > manifest.client_library_max_size)
      return "library " + library.name() + " is " + std::to_string(library.size()) +
             " bytes, more than this master takes from a job (client_library_max_size: " +
             std::to_string(manifest.client_library_max_size) + " bytes)";
  }
  wire::Envelope ask;
  auto* wanted = ask.mutable_library_upload_request();
  for (const auto& library : job.libraries()) {
    *request.add_libraries() = library;
    const std::string& sha = library.sha256();
    if (images_.has(sha)) {
      images_.pin(sha);
      session.library_pins.push_back(sha);
      continue;
    }
    session.libraries_awaited.insert(sha);
    if (images_.uploading(sha)) continue;  // another job's client is sending it
    if (auto refused = images_.begin_upload(sha, library.size(), session_id)) {
      for (const auto& uploading : session.library_uploads) images_.abort_upload(uploading);
      session.library_uploads.clear();
      return "library " + library.name() + " cannot be stored: " + *refused;
    }
    session.library_uploads.insert(sha);
    wanted->add_sha256(sha);
  }
  if (wanted->sha256_size() > 0) {
    log()->info("asking {} for {} of its job's libraries", session.peer.name,
                wanted->sha256_size());
    session.connection->send(ask);
  }
  return "";
}

void Master::library_chunk(std::uint64_t session_id, const wire::ImageChunk& chunk) {
  const std::string& sha = chunk.image_sha256();
  auto outcome = images_.add_chunk(sha, session_id, chunk.offset(), chunk.data(), chunk.last());
  if (!outcome) return;
  if (auto uploader = sessions_.find(session_id); uploader != sessions_.end())
    uploader->second->library_uploads.erase(sha);
  if (!outcome->empty()) {
    log()->error("upload of library {} from session {} failed: {}", hex_of(sha).substr(0, 16),
                 session_id, *outcome);
    library_unavailable(sha, *outcome);
    return;
  }
  log()->info("stored library {} from session {}", hex_of(sha).substr(0, 16), session_id);
  for (auto& [id, session] : sessions_) {
    if (session->libraries_awaited.erase(sha) == 0) continue;
    images_.pin(sha);
    session->library_pins.push_back(sha);
    if (session->libraries_awaited.empty() && session->deferred) {
      job_packages_.open(id, session->deferred_job, std::move(*session->deferred), true);
      session->deferred.reset();
    }
  }
  release_pending_jobs(Clock::time_point{});
  scheduler_.dispatch();
}

void Master::library_unavailable(const std::string& sha256, const std::string& reason) {
  std::vector<Session*> refused;
  for (auto& [id, session] : sessions_)
    if (session->libraries_awaited.contains(sha256)) refused.push_back(session.get());
  for (Session* session : refused) {
    std::string name = hex_of(sha256).substr(0, 16);
    if (session->deferred)
      for (const auto& library : session->deferred->libraries())
        if (library.sha256() == sha256) name = library.name();
    refuse_pending_job(*session, "library " + name + " could not be stored: " + reason);
  }
}

void Master::refuse_pending_job(Session& session, const std::string& message) {
  log()->warn("job of {} refused: {}", session.peer.name, message);
  session.libraries_awaited.clear();
  session.deferred.reset();
  if (!session.pending_opened) return;  // already answered
  wire::Envelope reply;
  reply.set_request_id(session.pending_opened->request_id());
  session.pending_opened.reset();
  reply.mutable_error()->set_message(message);
  session.connection->send(reply);
  session.connection->close_after_flush("job refused");
}

void Master::release_job_libraries(Session& session) {
  for (const auto& sha : session.library_pins) images_.unpin(sha);
  session.library_pins.clear();
  session.libraries_awaited.clear();
  session.deferred.reset();
}

}  // namespace clupy::master
