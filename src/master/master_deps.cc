// The master's side of dependencies (docs/dependencies.md): it announces the manifest to each
// server at registration and to all when its version changes, keeps each server's report in the
// registry, logs changes of state, and holds a server that does not meet the current manifest
// out of scheduling until it does.
#include <algorithm>

#include "clupy/errors.hpp"
#include "common/log.hpp"
#include "deps/program_check.hpp"
#include "master/master.hpp"

namespace clupy::master {

namespace {
auto log() { return common::logger("master"); }
}  // namespace

void Master::reload_dependencies(const std::string& why) {
  if (manifest_->reload(why)) manifest_changed();
}

void Master::announce_manifest(Session& session) {
  wire::Envelope message;
  *message.mutable_dependency_manifest() = manifest_->announcement();
  session.connection->send(message);
}

void Master::manifest_changed() {
  for (auto& [id, session] : sessions_) {
    if (session->server_id.empty() || !session->connection->is_open()) continue;
    update_hold(session->server_id);
    announce_manifest(*session);
  }
  scheduler_.dispatch();
}

void Master::dependency_report(Session& session, const wire::DependencyReport& report) {
  const ServerRecord* record = registry_.find(session.server_id);
  if (record == nullptr) return;
  const wire::DependencyReport& before = record->dependencies;
  // Progress (an installer's output) arrives several times a second: the log gets changes of
  // state, the registry every report.
  const bool changed = before.manifest_version() != report.manifest_version() ||
                       before.satisfied() != report.satisfied() ||
                       before.in_progress() != report.in_progress() ||
                       before.summary() != report.summary();
  if (changed && !report.manifest_version().empty()) {
    const std::string version = report.manifest_version().substr(0, 12);
    if (report.in_progress())
      log()->info("server {}: syncing dependencies to {}{}{}", session.server_id, version,
                  report.summary().empty() ? "" : ": ", report.summary());
    else if (report.satisfied())
      log()->info("server {}: dependencies satisfied ({})", session.server_id, version);
    else
      log()->warn("server {}: dependencies not satisfied ({}), it takes no tasks: {}",
                  session.server_id, version, report.summary());
  }
  // A sync that just ended may have changed the server's library folder: its offer is read
  // again (the server starts that itself), and until it arrives the server is not judged.
  const bool sync_ended =
      !report.in_progress() &&
      (before.in_progress() || before.manifest_version() != report.manifest_version());
  if (sync_ended && registry_.forget_offer(session.server_id))
    judge_server(session.server_id, false);
  registry_.set_dependencies(session.server_id, report);
  const bool was_held = scheduler_.server_held(session.server_id);
  update_hold(session.server_id);
  if (was_held && !scheduler_.server_held(session.server_id)) scheduler_.dispatch();
}

void Master::update_hold(const std::string& server_id) {
  const ServerRecord* record = registry_.find(server_id);
  if (record == nullptr) return;
  scheduler_.set_server_held(server_id, !manifest_->satisfied_by(record->dependencies));
}

}  // namespace clupy::master

// ---- programs against servers (docs/dependencies.md#programs) ----------------------------------

namespace clupy::master {

bool Master::judge(SessionId client, const Session& session, const ServerRecord& server,
                   wire::ServerVerdict& verdict) {
  verdict.set_server_id(server.description.server_id());
  if (!server.offer_known) {
    // Not compared yet: nothing goes there until it is. Offers are read on demand.
    scheduler_.set_refused(client, server.description.server_id(), true);
    if (!server.offer_requested) {
      registry_.offer_requested(server.description.server_id());
      auto holder = sessions_.find(server.connection_id);
      if (holder != sessions_.end()) {
        wire::Envelope request;
        request.mutable_offer_request();
        holder->second->connection->send(request);
      }
    }
    return false;
  }
  const auto differences = deps::compare_program(*session.needs, server.offer);
  for (const auto& difference : differences) *verdict.add_differences() = difference;
  verdict.set_refused(deps::refuses(differences, session.needs->strict()));
  scheduler_.set_refused(client, server.description.server_id(), verdict.refused());
  return true;
}

namespace {
std::string describe(const wire::ServerVerdict& verdict) {
  std::string text = "server " + verdict.server_id() + ": ";
  for (int i = 0; i < verdict.differences_size(); ++i)
    text += (i == 0 ? "" : "; ") + verdict.differences(i).text();
  return text;
}
}  // namespace

wire::ProgramVerdicts Master::judge_all(SessionId client, const Session& session) {
  wire::ProgramVerdicts verdicts;
  std::size_t servers = 0;
  std::size_t refusing = 0;
  std::string refusals;
  registry_.for_each([&](const std::string&, const ServerRecord& record) {
    if (record.connection_id == 0) return;
    ++servers;
    wire::ServerVerdict verdict;
    if (!judge(client, session, record, verdict)) return;
    if (verdict.refused()) {
      ++refusing;
      refusals += (refusals.empty() ? "" : "\n  ") + describe(verdict);
    }
    if (verdict.differences_size() > 0) *verdicts.add_servers() = std::move(verdict);
  });
  if (servers > 0 && refusing == servers) {
    verdicts.set_no_server_can_run(true);
    verdicts.set_message("no server can run this program (dependency_check):\n  " + refusals);
  } else if (refusing > 0) {
    verdicts.set_message("servers that cannot run this program get none of its tasks:\n  " +
                         refusals);
  }
  if (!verdicts.message().empty())
    log()->warn("job of {}: {}", session.peer.name, verdicts.message());
  return verdicts;
}

void Master::judge_server(const std::string& server_id, bool notify) {
  const ServerRecord* record = registry_.find(server_id);
  if (record == nullptr) return;
  for (auto& [id, session] : sessions_) {
    if (!session->needs) continue;
    wire::ServerVerdict verdict;
    if (!judge(id, *session, *record, verdict) || !notify) continue;
    if (session->pending_opened) continue;  // its JobOpened will carry it
    if (verdict.differences_size() == 0) continue;
    wire::Envelope message;
    auto* verdicts = message.mutable_program_verdicts();
    if (verdict.refused())
      verdicts->set_message("server " + server_id +
                            " cannot run this program and gets none of its "
                            "tasks: " +
                            describe(verdict));
    *verdicts->add_servers() = std::move(verdict);
    session->connection->send(message);
  }
}

void Master::server_offer(Session& server, wire::ServerOffer&& offer) {
  // Bounded: an offer lists the sonames of one machine's loader cache.
  if (offer.libraries_size() > 100'000) {
    log()->warn("server {}: an offer of {} libraries ignored", server.server_id,
                offer.libraries_size());
    return;
  }
  registry_.set_offer(server.server_id, std::move(offer));
  judge_server(server.server_id, true);
  release_pending_jobs(Clock::time_point{});
  scheduler_.dispatch();
}

bool Master::offers_known() const {
  bool known = true;
  registry_.for_each([&](const std::string&, const ServerRecord& record) {
    if (record.connection_id != 0 && !record.offer_known) known = false;
  });
  return known;
}

void Master::release_pending_jobs(Clock::time_point now) {
  const bool all_known = offers_known();
  for (auto& [id, session] : sessions_) {
    if (!session->pending_opened) continue;
    const bool ready =
        (!session->needs || all_known) && job_packages_.settled(id) && !session->deferred;
    if (!ready && (now == Clock::time_point{} || now < session->pending_until)) continue;
    wire::Envelope reply = std::move(*session->pending_opened);
    session->pending_opened.reset();
    if (session->needs) *reply.mutable_job_opened()->mutable_verdicts() = judge_all(id, *session);
    send_job_opened(id, *session, std::move(reply));
  }
}

void Master::send_job_opened(SessionId id, Session& session, wire::Envelope&& reply) {
  if (session.deferred) {
    // Its deadline passed with libraries not uploaded yet (another job's upload of them stalled).
    session.pending_opened = std::make_unique<wire::Envelope>(std::move(reply));
    refuse_pending_job(session,
                       "the job's libraries were not uploaded to the master in time; run it again");
    return;
  }
  if (job_packages_.has(id) && job_packages_.ready_servers(id).empty()) {
    // With servers connected and none able to install the job's packages, its tasks could only
    // wait: the job is refused, naming each server's reason.
    std::size_t connected = 0;
    registry_.for_each([&](const std::string&, const ServerRecord& record) {
      if (record.connection_id != 0) ++connected;
    });
    if (connected > 0) {
      const std::string failures = job_packages_.failures(id);
      const std::string message =
          "no server can install this job's " + job_packages_.brought(id) +
          (failures.empty() ? std::string(" within install_timeout") : ": " + failures);
      log()->warn("job of {} refused: {}", session.peer.name, message);
      const std::uint64_t request_id = reply.request_id();
      reply.Clear();
      reply.set_request_id(request_id);
      reply.mutable_error()->set_message(message);
      session.connection->send(reply);
      session.connection->close_after_flush("job refused");
      return;
    }
  }
  session.connection->send(reply);
}

// ---- a job's own packages (docs/dependencies.md#a-jobs-own-packages) -------------------------

std::string Master::open_job_packages(std::uint64_t session_id, Session& session,
                                      std::uint64_t job_id, const wire::OpenJob& job) {
  const deps::Manifest& manifest = manifest_->manifest();
  wire::JobPackagesRequest request;
  std::string not_in_manifest;
  for (const auto& p : job.packages()) {
    try {
      deps::parse_requirement(p.name(),
                              p.relation().empty() ? "" : p.relation() + " " + p.version());
    } catch (const ConfigError& e) {
      return std::string("the job's packages: ") + e.what();
    }
    const bool listed = std::any_of(manifest.packages.begin(), manifest.packages.end(),
                                    [&](const auto& m) { return m.name == p.name(); });
    if (!listed) not_in_manifest += (not_in_manifest.empty() ? "" : ", ") + p.name();
    *request.add_packages() = p;
  }
  if (!not_in_manifest.empty() && !manifest.allow_client_packages)
    return "this master takes no packages from jobs that its dependency manifest does not list "
           "(allow_client_packages: false): " +
           not_in_manifest +
           "; ask its operator to add them to the manifest or to set allow_client_packages: "
           "true";
  request.set_install_command(manifest.install_command);
  request.set_install_timeout_ms(static_cast<std::uint32_t>(manifest.install_timeout.count()));
  if (job.libraries_size() > 0) {
    if (auto refused = open_job_libraries(session_id, session, job, request); !refused.empty())
      return refused;
    scheduler_.set_library_set(session_id, deps::library_set_digest(request.libraries()));
  }
  if (!session.libraries_awaited.empty()) {
    // Servers fetch the libraries from the master: they are asked once it has them all.
    session.deferred = std::make_unique<wire::JobPackagesRequest>(std::move(request));
    session.deferred_job = job_id;
    return "";
  }
  job_packages_.open(session_id, job_id, std::move(request), true);
  return "";
}

void Master::job_packages_report(Session& server, const wire::JobPackagesReport& report) {
  if (server.server_id.empty()) return;
  const auto changed = job_packages_.report(server.server_id, report);
  if (changed.empty()) return;
  release_pending_jobs(Clock::time_point{});
  scheduler_.dispatch();
}

}  // namespace clupy::master
