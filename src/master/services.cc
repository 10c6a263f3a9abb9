#include "master/services.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "clupy/detail/call.hpp"
#include "clupy/errors.hpp"
#include "clupy/service.hpp"
#include "common/auth.hpp"
#include "common/log.hpp"
#include "common/task_result.hpp"
#include "service/front.hpp"
#include "service/openapi.hpp"

namespace clupy::master {

namespace {

auto log() { return common::logger("service"); }

constexpr std::size_t kOutputTail = 4096;
// A readiness check gets at least this long: the replica may have to fetch the image first.
constexpr std::uint32_t kReadyTimeoutMs = 60000;

std::string error_body(const std::string& message, const std::string& type = "") {
  nlohmann::json out = {{"error", message}};
  if (!type.empty()) out["type"] = type;
  return out.dump() + "\n";
}

Failure failure_of(const wire::TaskResult& result) {
  auto outcome = common::read_task_result(result);
  return outcome.ok ? Failure{} : std::move(outcome.failure);
}

bool succeeded(const wire::TaskResult& result, std::string* value) {
  const auto outcome = common::read_task_result(result);
  if (outcome.ok && value) *value = std::string(outcome.result);
  return outcome.ok;
}

// What an HTTP caller of the same entry point would have been answered.
int http_status_of(const wire::TaskResult& result) {
  if (succeeded(result, nullptr)) return 200;
  switch (failure_of(result).kind) {
    case FailureKind::kException:
      return 500;
    case FailureKind::kTimeout:
      return 504;
    case FailureKind::kProtocol:
      return 400;
    default:
      return 503;
  }
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

}  // namespace

struct ServiceVersion {
  wire::ServiceDefinition definition;
  SessionId session = 0;
  std::uint64_t job_id = 0;
  std::uint32_t number = 0;
  std::string image_sha256;
  std::string image_name;
  std::string exports_json;
  std::string openapi;
  std::size_t in_flight = 0;
  bool ready = false;
  std::size_t ready_pending = 0;
  std::set<std::string> servers;
  SessionId publisher = 0;
  std::uint64_t publish_request = 0;
  std::string output_tail;
  Clock::time_point published_at;
  bool restored = false;  // served again from a kept record: no publisher waits for it
};

class PublishedService : public services::FrontHandler {
 public:
  PublishedService(ServiceHost& host, wire::ServiceDefinition def)
      : host_(host), definition(std::move(def)) {}

  bool authorized(std::string_view authorization) const override {
    const auto& token = host_.env().token;
    // auth: token on a master without a token (allow_no_auth): nothing to check.
    if (definition.auth() == "public" || (definition.auth() == "token" && !token)) return true;
    constexpr std::string_view kBearer = "Bearer ";
    if (!authorization.starts_with(kBearer)) return false;
    const std::string_view presented = authorization.substr(kBearer.size());
    if (token && common::constant_time_equal(presented, *token)) return true;
    return definition.auth() == "key" && !definition.service_key().empty() &&
           common::constant_time_equal(presented, definition.service_key());
  }

  bool has_entry(std::string_view entry) const override {
    for (const auto& e : definition.entry_points())
      if (e == entry) return true;
    return false;
  }

  void call(const std::string& entry, std::string body, services::Respond respond) override {
    if (!current) {
      respond({503, "application/json", error_body("the service has no ready version")});
      return;
    }
    ServiceVersion& version = *current;
    ++version.in_flight;
    const SessionId session = version.session;
    host_.submit(version, entry, std::move(body),
                 [this, session, respond = std::move(respond)](const wire::TaskResult& result) {
                   answer(session, result, respond);
                 });
  }

  services::Reply page(std::string_view path) override {
    if (path == "ready") {
      if (current && current->ready) return {200, "text/plain; charset=utf-8", "ready\n"};
      return {503, "text/plain; charset=utf-8", "not ready\n"};
    }
    if (path == "metrics") {
      common::MetricsText text;
      front->stats().write_metrics(definition.name(), text);
      text.family("clupy_service_version", "gauge", "The version answering requests.");
      text.sample("clupy_service_version", {{"service", definition.name()}},
                  current ? static_cast<double>(current->number) : 0.0);
      return {200, "text/plain; version=0.0.4", text.take()};
    }
    if (path == "openapi.json") return {200, "application/json", current ? current->openapi : "{}"};
    return {200, "application/json", status().dump(2) + "\n"};
  }

  nlohmann::json status() const {
    const auto now = Clock::now();
    const auto& stats = front->stats();
    nlohmann::json entries = nlohmann::json::object();
    for (const auto& [name, e] : stats.entries()) {
      nlohmann::json by_status = nlohmann::json::object();
      for (const auto& [code, n] : e.by_status) by_status[std::to_string(code)] = n;
      entries[name] = {{"requests", e.requests},
                       {"errors", e.errors},
                       {"by_status", by_status},
                       {"latency_ms",
                        {{"p50", e.percentile(0.5) * 1000},
                         {"p90", e.percentile(0.9) * 1000},
                         {"p99", e.percentile(0.99) * 1000}}}};
    }
    const auto total = stats.total();
    nlohmann::json servers = nlohmann::json::array();
    if (current)
      for (const auto& s : current->servers) servers.push_back(s);
    // A version being started (a first publish or a rolling update): how many of its replicas
    // passed their readiness check, for `clupy --publish` to show them coming up.
    nlohmann::json rollout = nullptr;
    if (next) {
      const std::size_t replicas = next->definition.replicas();
      rollout = {{"version", next->number},
                 {"replicas", replicas},
                 {"ready", replicas - std::min(replicas, next->ready_pending)},
                 {"servers", next->servers}};
    }
    return {{"name", definition.name()},
            {"url", url},
            {"rollout", rollout},
            {"state", current && current->ready ? (next ? "updating" : "ready") : "starting"},
            {"version", current ? current->number : 0},
            {"image_sha256", current ? hex_of(current->image_sha256) : ""},
            {"replicas", definition.replicas()},
            {"servers", servers},
            {"entry_points", definition.entry_points()},
            {"auth", definition.auth()},
            {"uptime_s", std::chrono::duration<double>(now - started).count()},
            {"requests", total.requests},
            {"errors", total.errors},
            {"in_flight", stats.in_flight()},
            {"replica_restarts", stats.replica_restarts()},
            {"requests_per_s", stats.rate(services::ServiceStats::Clock::now())},
            {"p99_ms", total.percentile(0.99) * 1000},
            {"entries", entries}};
  }

  void answer(SessionId session, const wire::TaskResult& result, const services::Respond& respond);

  ServiceHost& host_;
  wire::ServiceDefinition definition;
  std::unique_ptr<services::Front> front;
  std::string url;
  Clock::time_point started = Clock::now();
  std::unique_ptr<ServiceVersion> current;
  std::unique_ptr<ServiceVersion> next;  // a rolling update's new version, until it is ready
  std::vector<std::unique_ptr<ServiceVersion>> draining;  // old versions finishing their calls
};

void PublishedService::answer(SessionId session, const wire::TaskResult& result,
                              const services::Respond& respond) {
  ServiceVersion* version = nullptr;
  if (current && current->session == session) version = current.get();
  for (auto& d : draining)
    if (d->session == session) version = d.get();
  if (version && version->in_flight > 0) --version->in_flight;
  std::string value;
  if (succeeded(result, &value)) {
    respond({200, "application/json", std::move(value)});
  } else {
    const Failure f = failure_of(result);
    switch (f.kind) {
      case FailureKind::kProtocol:
        respond({400, "application/json", error_body(f.message)});
        break;
      case FailureKind::kException:
        respond({500, "application/json", error_body(f.message, f.type_name)});
        break;
      case FailureKind::kTimeout:
        respond({504, "application/json",
                 error_body("the call ran longer than the service's timeout (" +
                            std::to_string(definition.timeout_ms()) + " ms) and was stopped")});
        break;
      default:
        if (f.kind == FailureKind::kCrash) front->stats().replica_restarted();
        respond({503, "application/json",
                 error_body("the replica running the call was lost (it may have run): " +
                            f.to_string())});
    }
  }
}

ServiceHost::ServiceHost(Env env) : env_(std::move(env)) {}
ServiceHost::~ServiceHost() {
  *alive_ = false;
  stop();
}

std::size_t ServiceHost::connected_servers() const {
  wire::RegistryReply reply;
  env_.registry.fill(reply, Clock::now());
  std::size_t n = 0;
  for (const auto& e : reply.servers()) n += e.connected() ? 1 : 0;
  return n;
}

void ServiceHost::publish(SessionId publisher, std::uint64_t request_id,
                          const std::string& image_sha256, const std::string& image_name,
                          const wire::PublishService& request) {
  auto refuse = [&](const std::string& message) {
    wire::Envelope reply;
    reply.set_request_id(request_id);
    reply.mutable_error()->set_message(message);
    env_.send(publisher, reply);
  };
  const auto& def = request.definition();
  if (def.name().empty() || def.entry_points().empty() || def.replicas() == 0)
    return refuse("the service definition needs a name, entry points and replicas");
  if (!env_.images.has(image_sha256))
    return refuse("the program's image is not on the master (its upload did not finish)");
  std::vector<std::string> exported;
  std::string openapi;
  try {
    exported = services::exported_names(request.exports_json());
  } catch (const ConfigError& e) {
    return refuse(e.what());
  }
  for (const auto& e : def.entry_points())
    if (std::find(exported.begin(), exported.end(), e) == exported.end())
      return refuse("entry point '" + e + "' is not exported by " + image_name +
                    " (add CLUPY_EXPORT(" + e + ", ...) to it)");
  const std::size_t servers = connected_servers();
  if (servers < def.replicas())
    return refuse("not enough servers: service " + def.name() + " asks for " +
                  std::to_string(def.replicas()) + " replica(s) and the cluster has " +
                  std::to_string(servers) + " connected server(s)");
  if (env_.job_packages.has(publisher)) {
    const auto ready = env_.job_packages.ready_servers(publisher);
    if (ready.size() < def.replicas()) {
      const std::string failures = env_.job_packages.failures(publisher);
      return refuse("not enough servers with the service's packages: service " + def.name() +
                    " asks for " + std::to_string(def.replicas()) + " replica(s) and " +
                    std::to_string(ready.size()) + " server(s) have its packages" +
                    (failures.empty() ? "" : " (" + failures + ")"));
    }
  }

  auto it = services_.find(def.name());
  PublishedService* service = nullptr;
  if (it == services_.end()) {
    std::string error;
    auto created = open_front(def, error);
    if (!created) return refuse(error);
    service = created.get();
    services_.emplace(def.name(), std::move(created));
  } else {
    service = it->second.get();
    if (service->next)
      return refuse("service " + def.name() + " is being updated already; wait for it to finish");
    if (def.port() != 0 && def.port() != service->front->port())
      return refuse("service " + def.name() + " listens on port " +
                    std::to_string(service->front->port()) +
                    "; a rolling update keeps the port (unpublish it first to move it)");
  }

  auto version = std::make_unique<ServiceVersion>();
  // The service takes the new definition (entry points, limits, credentials) when this version
  // becomes current: until then the old version answers under the old one.
  version->definition = def;
  version->definition.set_port(service->front->port());
  version->number = service->current ? service->current->number + 1 : 1;
  version->image_sha256 = image_sha256;
  version->exports_json = request.exports_json();
  version->publisher = publisher;
  version->publish_request = request_id;
  start_version(*service, std::move(version), image_name);
  env_.job_packages.adopt(publisher, service->next->session, service->next->job_id);
}

std::unique_ptr<PublishedService> ServiceHost::open_front(const wire::ServiceDefinition& def,
                                                          std::string& error) {
  auto created = std::make_unique<PublishedService>(*this, def);
  services::FrontOptions options;
  options.bind = def.bind().empty() ? env_.default_bind : def.bind();
  options.port = static_cast<int>(def.port());
  options.max_body = def.max_body();
  options.timeout = std::chrono::milliseconds(def.timeout_ms());
  try {
    created->front = std::make_unique<services::Front>(env_.io, options, *created);
  } catch (const ConfigError& e) {
    error = std::string("service ") + def.name() + ": " + e.what();
    return nullptr;
  }
  const std::string host =
      options.bind == "0.0.0.0" || options.bind == "::" ? host_name() : options.bind;
  created->url = "http://" + host + ":" + std::to_string(created->front->port()) + "/";
  return created;
}

void ServiceHost::start_version(PublishedService& service, std::unique_ptr<ServiceVersion> version,
                                const std::string& image_name) {
  const auto& def = version->definition;
  version->session = next_session_++;
  version->image_name = image_name;
  version->openapi = services::openapi_document(
      def.name(), std::to_string(version->number), version->exports_json,
      {def.entry_points().begin(), def.entry_points().end()},
      def.auth() == "public" ? services::AuthMode::kPublic : services::AuthMode::kToken);
  version->published_at = Clock::now();
  env_.images.pin(version->image_sha256);
  version->job_id = env_.scheduler.open_job(
      version->session, "service:" + def.name() + "/v" + std::to_string(version->number),
      version->image_sha256, image_name, true, Clock::now());
  by_session_[version->session] = {&service, version.get()};
  ServiceVersion& v = *version;
  service.next = std::move(version);
  log()->info("service {} version {}: starting {} replica(s) of {}", def.name(), v.number,
              def.replicas(), image_name);
  v.ready_pending = def.replicas();
  for (std::uint32_t i = 0; i < def.replicas(); ++i)
    submit(v, "clupy.ready", "[]", [this, service = &service, &v](const wire::TaskResult& result) {
      ready_check_done(*service, v, result);
    });
}

void ServiceHost::restore(const wire::KeptService& record) {
  const auto& def = record.definition();
  auto unserved = unserved_.find(def.name());
  const bool retrying = unserved != unserved_.end() && unserved->second.record;
  if (unserved != unserved_.end()) unserved_.erase(unserved);
  if (services_.count(def.name())) return;  // published again meanwhile
  std::string error;
  auto created = open_front(def, error);
  if (!created) {
    // Perhaps a former master (frozen, or not yet exited) still holds the port: tried again.
    if (!retrying)
      log()->warn("kept service {} not served yet: {} (trying again every second)", def.name(),
                  error);
    restore_failed(def.name(), error, record);
    return;
  }
  PublishedService& service = *created;
  services_.emplace(def.name(), std::move(created));
  auto version = std::make_unique<ServiceVersion>();
  version->definition = def;
  version->number = record.version();
  version->image_sha256 = record.image_sha256();
  version->exports_json = record.exports_json();
  version->restored = true;
  log()->info("service {} version {} kept from before: serving it again at {}", def.name(),
              record.version(), service.url);
  start_version(service, std::move(version), record.image_name());
}

void ServiceHost::restore_failed(const std::string& name, const std::string& error,
                                 std::optional<wire::KeptService> record) {
  if (!record) log()->error("kept service {} cannot be served: {}", name, error);
  auto& unserved = unserved_[name];
  unserved.error = error;
  unserved.record = std::move(record);
  unserved.next_try = Clock::now() + std::chrono::seconds(1);
}

void ServiceHost::submit(ServiceVersion& version, const std::string& entry, std::string body,
                         std::function<void(const wire::TaskResult&)> done) {
  detail::EncodedCall call;
  call.form = detail::CallForm::kNamed;
  call.name = detail::json_entry_name(entry);
  call.function_name = entry;
  call.arguments = std::move(body);
  const bool ready_check = entry == "clupy.ready";
  submit_call(version, detail::serialize_call(call),
              ready_check ? std::max(kReadyTimeoutMs, version.definition.timeout_ms())
                          : version.definition.timeout_ms(),
              ready_check ? 3 : 0, std::move(done));
}

void ServiceHost::submit_call(ServiceVersion& version, std::string call, std::uint32_t timeout_ms,
                              std::int32_t retries,
                              std::function<void(const wire::TaskResult&)> done) {
  const std::uint64_t task_id = next_task_++;
  pending_.emplace(task_id, Pending{version.session, std::move(done)});
  // Queued, and handed to the scheduler once per turn of the io_context: the requests that
  // arrived together travel to the servers as one AssignTasks per server.
  wire::SubmitTasks& tasks = queued_[version.session];
  tasks.set_job_id(version.job_id);
  auto* task = tasks.add_tasks();
  task->set_task_id(task_id);
  task->set_call(std::move(call));
  task->mutable_options()->set_server_count(version.definition.replicas());
  task->mutable_options()->set_timeout_ms(timeout_ms);
  task->mutable_options()->set_retries(retries);
  if (flush_posted_) return;
  flush_posted_ = true;
  boost::asio::post(env_.io, [this, alive = alive_] {
    if (!*alive) return;
    flush_posted_ = false;
    const auto now = Clock::now();
    for (auto& [session, queued] : queued_) env_.scheduler.submit(session, queued, now);
    queued_.clear();
    env_.scheduler.dispatch();
  });
}

void ServiceHost::client_call(SessionId client, wire::TaskSpec& task) {
  const std::uint64_t client_task = task.task_id();
  auto it = services_.find(task.options().service());
  if (it == services_.end() || !it->second->current) {
    wire::Envelope reply;
    auto* result = reply.mutable_task_results()->add_results();
    result->set_task_id(client_task);
    result->mutable_failure()->set_kind(static_cast<std::uint32_t>(FailureKind::kUnavailable));
    result->mutable_failure()->set_message(
        it == services_.end() ? "no service named '" + task.options().service() + "' is published"
                              : "service '" + task.options().service() + "' has no ready version");
    env_.send(client, reply);
    return;
  }
  PublishedService& service = *it->second;
  ServiceVersion& version = *service.current;
  ++version.in_flight;
  const SessionId session = version.session;
  const std::uint32_t timeout = task.options().timeout_ms() > 0 ? task.options().timeout_ms()
                                                                : version.definition.timeout_ms();
  // Counted in the front's /status and /metrics like an HTTP request of the same entry point,
  // with the status it would have had there.
  std::string entry;
  try {
    entry = detail::parse_call_view(task.call()).name;
  } catch (const std::exception&) {
    entry = "(undecodable call)";  // the replica fails it with kProtocol
  }
  service.front->stats().started();
  submit_call(version, std::move(*task.mutable_call()), timeout,
              std::max(0, task.options().retries() < 0 ? 0 : task.options().retries()),
              [this, client, client_task, session, &service, entry = std::move(entry),
               started = services::ServiceStats::Clock::now()](const wire::TaskResult& result) {
                const auto now = services::ServiceStats::Clock::now();
                service.front->stats().finished();
                service.front->stats().record(entry, http_status_of(result), now - started, now);
                if (service.current && service.current->session == session &&
                    service.current->in_flight > 0)
                  --service.current->in_flight;
                for (auto& d : service.draining)
                  if (d->session == session && d->in_flight > 0) --d->in_flight;
                wire::Envelope reply;
                auto* copy = reply.mutable_task_results()->add_results();
                *copy = result;
                copy->set_task_id(client_task);
                env_.send(client, reply);
              });
}

void ServiceHost::ready_check_done(PublishedService& service, ServiceVersion& version,
                                   const wire::TaskResult& result) {
  if (version.ready_pending == 0) return;  // the publish failed already
  if (!succeeded(result, nullptr)) {
    std::string message = "a replica of " + service.definition.name() +
                          " failed its readiness check: " + failure_of(result).to_string();
    if (!version.output_tail.empty())
      message += "\n--- its output (last " + std::to_string(version.output_tail.size()) +
                 " bytes) ---\n" + version.output_tail;
    version.ready_pending = 0;
    finish_publish(service, version, message);
    return;
  }
  if (!result.server_id().empty()) version.servers.insert(result.server_id());
  if (--version.ready_pending == 0) finish_publish(service, version, "");
}

void ServiceHost::finish_publish(PublishedService& service, ServiceVersion& version,
                                 const std::string& error) {
  wire::Envelope reply;
  reply.set_request_id(version.publish_request);
  const SessionId publisher = version.publisher;
  const std::string name = service.definition.name();
  if (!error.empty()) {
    log()->warn("service {} version {} not published: {}", name, version.number, error);
    reply.mutable_error()->set_message(error);
    std::unique_ptr<ServiceVersion> failed = std::move(service.next);
    retire(*failed);
    if (!service.current) {
      service.front->stop();
      services_.erase(name);  // `service` is gone
    }
    if (failed->restored)
      restore_failed(name, "version " + std::to_string(failed->number) +
                               " kept from before did not start again: " + error);
    else
      env_.send(publisher, reply);
    return;
  }
  version.ready = true;
  service.definition = version.definition;
  service.front->set_timeout(std::chrono::milliseconds(version.definition.timeout_ms()));
  service.front->set_max_body(version.definition.max_body());
  if (service.current) service.draining.push_back(std::move(service.current));
  service.current = std::move(service.next);
  log()->info("service {} version {} ready at {} on {} server(s)", name, version.number,
              service.url, version.servers.size());
  unserved_.erase(name);
  if (env_.keeper && !version.restored) {
    wire::KeptService record;
    *record.mutable_definition() = version.definition;
    record.set_exports_json(version.exports_json);
    record.set_image_sha256(version.image_sha256);
    record.set_image_name(version.image_name);
    record.set_version(version.number);
    env_.keeper->keep(record, env_.images.path_of(version.image_sha256));
  }
  if (version.restored) {
    retire_drained(service);
    return;
  }
  auto* published = reply.mutable_service_published();
  published->set_url(service.url);
  published->set_version(version.number);
  for (const auto& s : version.servers) published->add_servers(s);
  env_.send(publisher, reply);
  retire_drained(service);
}

void ServiceHost::retire(ServiceVersion& version) {
  by_session_.erase(version.session);
  env_.job_packages.close(version.session);
  queued_.erase(version.session);
  // Their callbacks point at the version: answers still to come are dropped.
  std::erase_if(pending_,
                [&](const auto& entry) { return entry.second.session == version.session; });
  // Later, not now: this may run inside the scheduler's own delivery of results.
  boost::asio::post(
      env_.io, [this, alive = alive_, session = version.session, image = version.image_sha256] {
        if (!*alive) return;
        env_.scheduler.client_gone(session);
        env_.images.unpin(image);
        env_.scheduler.dispatch();
      });
}

void ServiceHost::retire_drained(PublishedService& service) {
  auto& d = service.draining;
  for (auto it = d.begin(); it != d.end();) {
    if ((*it)->in_flight == 0) {
      log()->info("service {} version {} retired", service.definition.name(), (*it)->number);
      retire(**it);
      it = d.erase(it);
    } else {
      ++it;
    }
  }
}

void ServiceHost::deliver(SessionId session, wire::TaskResults& results) {
  auto owner = by_session_.find(session);
  PublishedService* service = owner == by_session_.end() ? nullptr : owner->second.first;
  for (const auto& result : results.results()) {
    auto it = pending_.find(result.task_id());
    if (it == pending_.end()) continue;
    auto done = std::move(it->second.done);
    pending_.erase(it);
    done(result);
  }
  // A callback may have unpublished or failed the service: look it up again.
  owner = by_session_.find(session);
  if (service && owner != by_session_.end() && owner->second.first == service)
    retire_drained(*service);
}

void ServiceHost::output(SessionId session, const std::string& text) {
  auto it = by_session_.find(session);
  if (it == by_session_.end()) return;
  std::string& tail = it->second.second->output_tail;
  tail += text;
  if (tail.size() > kOutputTail) tail.erase(0, tail.size() - kOutputTail);
}

void ServiceHost::unpublish(SessionId from, std::uint64_t request_id, const std::string& name) {
  wire::Envelope reply;
  reply.set_request_id(request_id);
  auto it = services_.find(name);
  if (it == services_.end()) {
    if (unserved_.erase(name) > 0) {
      // Kept but not served (its record or image unusable): forgetting it is all there is.
      if (env_.keeper) env_.keeper->forget(name);
      log()->info("service {} unpublished (it was not served: its kept definition is removed)",
                  name);
      reply.mutable_service_unpublished()->set_name(name);
    } else {
      reply.mutable_error()->set_message("no service named '" + name + "' is published");
    }
    env_.send(from, reply);
    return;
  }
  if (env_.keeper) env_.keeper->forget(name);
  PublishedService& service = *it->second;
  service.front->stop();  // the port is free from here on
  std::vector<ServiceVersion*> versions;
  if (service.current) versions.push_back(service.current.get());
  if (service.next) versions.push_back(service.next.get());
  for (auto& d : service.draining) versions.push_back(d.get());
  // Calls still running are answered now (HTTP callers' connections are closed already;
  // clients of clupy::service get the failure).
  std::vector<std::function<void(const wire::TaskResult&)>> running;
  for (auto p = pending_.begin(); p != pending_.end();) {
    const bool ours = std::any_of(versions.begin(), versions.end(), [&](const ServiceVersion* v) {
      return v->session == p->second.session;
    });
    if (ours) {
      running.push_back(std::move(p->second.done));
      p = pending_.erase(p);
    } else {
      ++p;
    }
  }
  wire::TaskResult unpublished;
  unpublished.mutable_failure()->set_kind(static_cast<std::uint32_t>(FailureKind::kUnavailable));
  unpublished.mutable_failure()->set_message("service " + name + " was unpublished");
  for (auto& done : running) done(unpublished);
  for (auto* v : versions) retire(*v);
  log()->info("service {} unpublished", name);
  // Answers still to come find no session and are dropped.
  services_.erase(it);
  reply.mutable_service_unpublished()->set_name(name);
  env_.send(from, reply);
}

void ServiceHost::list(wire::ServicesReply& reply) {
  std::map<std::string, std::string> all;
  for (const auto& [name, service] : services_) all[name] = service->status().dump();
  for (const auto& [name, unserved] : unserved_) {
    if (all.count(name)) continue;
    const wire::ServiceDefinition def =
        unserved.record ? unserved.record->definition() : wire::ServiceDefinition{};
    all[name] = nlohmann::json{
        {"name", name},
        {"state", "failed"},
        {"error", unserved.error},
        {"rollout", nullptr},
        {"url", ""},
        {"version", unserved.record ? unserved.record->version() : 0},
        {"replicas", def.replicas()},
        {"servers", nlohmann::json::array()},
        {"requests_per_s", 0.0},
        {"requests", 0},
        {"errors", 0},
        {"p99_ms",
         0.0}}.dump();
  }
  for (auto& [name, json] : all) reply.add_status_json(std::move(json));
}

void ServiceHost::maintain(Clock::time_point now) {
  for (const auto& [session, owner] : by_session_) env_.scheduler.client_seen(session, now);
  // Kept services whose port was held elsewhere: tried again.
  std::vector<wire::KeptService> retry;
  for (auto& [name, unserved] : unserved_)
    if (unserved.record && now >= unserved.next_try) {
      retry.push_back(*unserved.record);
      unserved.next_try = now + std::chrono::seconds(1);
    }
  for (const auto& record : retry) restore(record);
}

void ServiceHost::stop() {
  for (auto& [name, service] : services_) service->front->stop();
}

}  // namespace clupy::master
