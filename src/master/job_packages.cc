#include "master/job_packages.hpp"

#include "common/log.hpp"

namespace clupy::master {

namespace {
auto log() { return common::logger("master"); }
constexpr auto kPackages = Scheduler::Refusal::kPackages;

std::string brought_by(const wire::JobPackagesRequest& request) {
  if (request.libraries_size() == 0) return "packages";
  return request.packages_size() == 0 ? "libraries" : "packages and libraries";
}
}  // namespace

std::string JobPackages::brought(SessionId session) const {
  auto it = jobs_.find(session);
  return it == jobs_.end() ? "packages" : brought_by(it->second.request);
}

void JobPackages::ask(const std::string& server_id, SessionId server_session, SessionId session,
                      Job& job) {
  env_.scheduler.set_refused(session, server_id, true, kPackages);
  job.reports.erase(server_id);
  wire::Envelope message;
  *message.mutable_job_packages_request() = job.request;
  env_.send(server_session, message);
}

void JobPackages::open(SessionId session, std::uint64_t job_id, wire::JobPackagesRequest request,
                       bool tell_client) {
  request.set_job_id(job_id);
  Job& job = jobs_[session];
  job.request = std::move(request);
  job.tell_client = tell_client;
  for_each_connected([&](const std::string& id, SessionId server_session) {
    ask(id, server_session, session, job);
  });
}

void JobPackages::adopt(SessionId from, SessionId to, std::uint64_t job_id) {
  auto source = jobs_.find(from);
  if (source == jobs_.end()) return;
  Job copy = source->second;
  copy.request.set_job_id(job_id);
  copy.tell_client = false;
  for_each_connected([&](const std::string& id, SessionId) {
    auto known = copy.reports.find(id);
    const bool ready =
        known != copy.reports.end() && !known->second.in_progress() && known->second.satisfied();
    env_.scheduler.set_refused(to, id, !ready, kPackages);
  });
  jobs_[to] = std::move(copy);
}

void JobPackages::close(SessionId session) { jobs_.erase(session); }

void JobPackages::server_registered(const std::string& server_id, SessionId server_session) {
  for (auto& [session, job] : jobs_) ask(server_id, server_session, session, job);
}

void JobPackages::server_lost(const std::string& server_id) {
  for (auto& [session, job] : jobs_) job.reports.erase(server_id);
}

std::vector<SessionId> JobPackages::report(const std::string& server_id,
                                           const wire::JobPackagesReport& report) {
  std::vector<SessionId> changed;
  for (auto& [session, job] : jobs_) {
    if (job.request.job_id() != report.job_id()) continue;
    const wire::DependencyReport& state = report.report();
    const bool ready = !state.in_progress() && state.satisfied();
    env_.scheduler.set_refused(session, server_id, !ready, kPackages);
    if (!state.in_progress()) {
      if (ready)
        log()->info("job {}: server {} has the job's {}", report.job_id(), server_id,
                    brought_by(job.request));
      else
        log()->warn(
            "job {}: server {} cannot install the job's {}, it gets none of the job's tasks: {}",
            report.job_id(), server_id, brought_by(job.request), state.summary());
    }
    job.reports[server_id] = state;
    if (job.tell_client) {
      wire::Envelope message;
      auto* out = message.mutable_job_packages_state();
      out->set_server_id(server_id);
      *out->mutable_report() = state;
      env_.send(session, message);
    }
    changed.push_back(session);
  }
  return changed;
}

bool JobPackages::settled(SessionId session) const {
  auto it = jobs_.find(session);
  if (it == jobs_.end()) return true;
  bool all = true;
  for_each_connected([&](const std::string& id, SessionId) {
    auto known = it->second.reports.find(id);
    if (known == it->second.reports.end() || known->second.in_progress()) all = false;
  });
  return all;
}

std::vector<std::string> JobPackages::ready_servers(SessionId session) const {
  std::vector<std::string> ready;
  auto it = jobs_.find(session);
  if (it == jobs_.end()) return ready;
  for_each_connected([&](const std::string& id, SessionId) {
    auto known = it->second.reports.find(id);
    if (known != it->second.reports.end() && !known->second.in_progress() &&
        known->second.satisfied())
      ready.push_back(id);
  });
  return ready;
}

std::string JobPackages::failures(SessionId session) const {
  std::string text;
  auto it = jobs_.find(session);
  if (it == jobs_.end()) return text;
  // In the order of the server ids, so that a message reads the same every time.
  for (const auto& [id, report] : it->second.reports) {
    const ServerRecord* record = env_.registry.find(id);
    if (record == nullptr || record->connection_id == 0) continue;
    const auto known = &report;
    if (known->in_progress() || known->satisfied()) continue;
    // Each failed item whole, with the installer's output tail: the job's owner cannot look
    // at the server.
    std::string why;
    for (const auto& item : known->items())
      if (item.state() == wire::DependencyItem::FAILED)
        why += (why.empty() ? "" : "; ") + item.name() + ": failed: " + item.detail();
    text += (text.empty() ? "" : "; ") + std::string("server ") + id + ": " +
            (why.empty() ? known->summary() : why);
  }
  return text;
}

}  // namespace clupy::master
