// Published services on the master (docs/services.md): each service is an HTTP front (its own
// port, served on the master's io_context thread) and a job of the scheduler whose tasks are
// the calls; its replicas are worker processes of the service's program on the servers that
// job reserves. A request becomes a task naming the entry point's JSON form, and the task's
// outcome becomes the answer. Not thread-safe: the master's io_context thread owns it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "clupy.pb.h"
#include "master/images.hpp"
#include "master/job_packages.hpp"
#include "master/registry.hpp"
#include "master/scheduler.hpp"
#include "master/service_keeper.hpp"

namespace clupy::master {

class PublishedService;
struct ServiceVersion;

class ServiceHost {
 public:
  // The scheduler knows a service's job by a session id no connection has.
  static constexpr SessionId kFirstSession = SessionId{1} << 62;
  static bool is_service_session(SessionId id) { return id >= kFirstSession; }

  struct Env {
    boost::asio::io_context& io;
    Scheduler& scheduler;
    Registry& registry;
    ImageStore& images;
    const std::optional<std::string>& token;
    std::string default_bind;
    std::function<void(SessionId, const wire::Envelope&)> send;
    // The service file's packages arrive as its publisher's job packages; each version's job
    // adopts them, so its replicas go only where they are installed.
    JobPackages& job_packages;
    // Where published services are kept across restarts and failovers; may be null (nothing
    // is kept).
    ServiceKeeper* keeper = nullptr;
  };

  explicit ServiceHost(Env env);
  ~ServiceHost();

  // A PublishService from `publisher`, whose job's image is `image_sha256`. Answers with
  // ServicePublished once ready, or ErrorReply.
  void publish(SessionId publisher, std::uint64_t request_id, const std::string& image_sha256,
               const std::string& image_name, const wire::PublishService& request);
  // A task a client submitted with options.service set: runs it in that service's job and
  // sends the result to the client under the client's task id.
  void client_call(SessionId client, wire::TaskSpec& task);
  void unpublish(SessionId from, std::uint64_t request_id, const std::string& name);
  // Serves a kept service again (a restarted or newly elected master): re-opens its front on
  // its port and starts its replicas once servers register. Its image must be in the images.
  // Problems (the port taken, the replicas failing their checks) are reported by list() and in
  // the log; the kept record stays until the service is unpublished.
  void restore(const wire::KeptService& record);
  // A kept service that cannot be served (its record corrupt, its image gone): listed by
  // list() with `error` until it is published again or unpublished.
  void restore_failed(const std::string& name, const std::string& error,
                      std::optional<wire::KeptService> record = std::nullopt);
  void list(wire::ServicesReply& reply);
  // The outcomes of calls (the Outbox's deliver for service sessions).
  void deliver(SessionId session, wire::TaskResults& results);
  // A replica's stdout/stderr: the last few KiB are kept for a publish that fails.
  void output(SessionId session, const std::string& text);
  // Keeps the services' server reservations alive.
  void maintain(Clock::time_point now);
  void stop();

  // ---- for PublishedService ----
  Env& env() { return env_; }
  // Submits entry(body) (or a readiness check with `ready_check`) to the version's job.
  void submit(ServiceVersion& version, const std::string& entry, std::string body,
              std::function<void(const wire::TaskResult&)> done);
  // Submits an encoded call (detail::serialize_call) to the version's job.
  void submit_call(ServiceVersion& version, std::string call, std::uint32_t timeout_ms,
                   std::int32_t retries, std::function<void(const wire::TaskResult&)> done);

 private:
  void ready_check_done(PublishedService& service, ServiceVersion& version,
                        const wire::TaskResult& result);
  void finish_publish(PublishedService& service, ServiceVersion& version, const std::string& error);
  void retire(ServiceVersion& version);
  void retire_drained(PublishedService& service);
  std::size_t connected_servers() const;
  // Opens the service's front; returns nullptr and sets `error` when its port cannot be had.
  std::unique_ptr<PublishedService> open_front(const wire::ServiceDefinition& def,
                                               std::string& error);
  // Opens a version's job and sends its readiness checks.
  void start_version(PublishedService& service, std::unique_ptr<ServiceVersion> version,
                     const std::string& image_name);

  Env env_;
  std::map<std::string, std::unique_ptr<PublishedService>> services_;
  struct Unserved {
    std::string error;
    std::optional<wire::KeptService> record;  // set: retried (a port still held elsewhere)
    Clock::time_point next_try{};
  };
  std::map<std::string, Unserved> unserved_;  // kept services not served, and why
  std::map<SessionId, std::pair<PublishedService*, ServiceVersion*>> by_session_;
  struct Pending {
    SessionId session = 0;
    std::function<void(const wire::TaskResult&)> done;
  };
  std::map<std::uint64_t, Pending> pending_;
  std::map<SessionId, wire::SubmitTasks> queued_;  // calls not yet handed to the scheduler
  bool flush_posted_ = false;
  SessionId next_session_ = kFirstSession;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for work posted to env_.io
  std::uint64_t next_task_ = 1;
};

}  // namespace clupy::master
