// Jobs' own packages on the master (docs/dependencies.md#a-jobs-own-packages): a job that brings
// packages (a client's clupy.client.dependency.yaml, a service file's `packages:`) has every
// connected server, and every server that registers while the job is open, install them
// (JobPackagesRequest); none of its tasks go to a server before that server reports them
// satisfied (Scheduler::Refusal::kPackages). Owned by the master's io_context thread.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "clupy.pb.h"
#include "master/registry.hpp"
#include "master/scheduler.hpp"

namespace clupy::master {

class JobPackages {
 public:
  struct Env {
    Scheduler& scheduler;
    Registry& registry;
    std::function<void(SessionId, const wire::Envelope&)> send;
  };
  explicit JobPackages(Env env) : env_(std::move(env)) {}

  // A job of scheduler session `session` needs these packages. `tell_client`: the session is a
  // client connection, told of each server's progress (JobPackagesState).
  void open(SessionId session, std::uint64_t job_id, wire::JobPackagesRequest request,
            bool tell_client);
  // Session `to` (job `job_id`) needs what `from` needs, and every server's state so far is
  // taken over: a service's version adopts its publisher's packages.
  void adopt(SessionId from, SessionId to, std::uint64_t job_id);
  void close(SessionId session);
  bool has(SessionId session) const { return jobs_.contains(session); }

  // Asks the server for every open job's packages.
  void server_registered(const std::string& server_id, SessionId server_session);
  void server_lost(const std::string& server_id);
  // A server's report. Returns the sessions whose state changed (usually one).
  std::vector<SessionId> report(const std::string& server_id,
                                const wire::JobPackagesReport& report);

  // Every connected server has finished with the session's packages (satisfied or failed).
  bool settled(SessionId session) const;
  std::vector<std::string> ready_servers(SessionId session) const;
  // What the session's job brings, for messages: "packages", "libraries" or "packages and
  // libraries".
  std::string brought(SessionId session) const;
  // "server s1: clupy-test-x: failed: <why, with the installer's output tail>; server s2: ..."
  // for the servers that failed.
  std::string failures(SessionId session) const;

 private:
  struct Job {
    wire::JobPackagesRequest request;                       // job_id: this session's job
    std::map<std::string, wire::DependencyReport> reports;  // by server id; latest
    bool tell_client = false;
  };
  void ask(const std::string& server_id, SessionId server_session, SessionId session, Job& job);
  template <typename F>
  void for_each_connected(F&& f) const {
    env_.registry.for_each([&](const std::string& id, const ServerRecord& record) {
      if (record.connection_id != 0) f(id, record.connection_id);
    });
  }

  Env env_;
  std::map<SessionId, Job> jobs_;
};

}  // namespace clupy::master
