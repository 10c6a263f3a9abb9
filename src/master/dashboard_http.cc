// The dashboard on the master's http_port (docs/operations.md#dashboard): its page and static
// files, the sign-in (the cluster token once, then a cookie), the JSON it polls, a task's kept
// output, and `clupy logs`. The page's files are compiled in (dashboard_assets.hpp).
#include <cctype>
#include <nlohmann/json.hpp>

#include "base/hex.hpp"
#include "common/auth.hpp"
#include "common/version.hpp"
#include "deps/package_sync.hpp"
#include "master/dashboard_assets.hpp"
#include "master/master.hpp"

namespace clupy::master {

namespace {

constexpr std::string_view kCookieName = "clupy_dashboard";

const DashboardAsset* asset(std::string_view path) {
  for (const auto& a : dashboard_assets())
    if (a.path == path) return &a;
  return nullptr;
}

void serve_asset(const DashboardAsset& a, common::HttpResponse& response) {
  response.status = 200;
  response.body = std::string(a.body);
  response.content_type = std::string(a.content_type) + "; charset=utf-8";
}

// The sign-in form, saying `message` (plain text) above it.
void login_page(common::HttpResponse& response, int status, const std::string& message) {
  serve_asset(*asset("/login"), response);
  std::string escaped;
  for (char c : message) {
    if (c == '<')
      escaped += "&lt;";
    else if (c == '>')
      escaped += "&gt;";
    else if (c == '&')
      escaped += "&amp;";
    else
      escaped += c;
  }
  const std::string marker = "<!--MESSAGE-->";
  if (auto at = response.body.find(marker); at != std::string::npos)
    response.body.replace(at, marker.size(), escaped);
  response.status = status;
}

void redirect(common::HttpResponse& response, const std::string& location) {
  response.status = 303;
  response.headers.emplace_back("Location", location);
  response.body = "see " + location + "\n";
}

std::uint64_t number_parameter(const common::HttpRequest& request, std::string_view name) {
  const std::string text = request.query_parameter(name);
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9' || value > (UINT64_MAX - 9) / 10) return 0;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

}  // namespace

std::string Master::dashboard_cookie() const {
  if (!token_) return {};
  return base::to_hex(common::hmac_sha256(*token_, "clupy-v1 dashboard cookie"));
}

bool Master::http_allowed(const common::HttpRequest& request) const {
  if (common::http_auth_allows(config_.http_auth, token_, request)) return true;
  const std::string cookie = request.cookie_value(kCookieName);
  return !cookie.empty() && common::constant_time_equal(cookie, dashboard_cookie());
}

void Master::http_request(const common::HttpRequest& request, common::HttpResponse& response) {
  // Pages are not to be framed by other sites; the dashboard's scripts are its own file only.
  response.headers.emplace_back("X-Frame-Options", "DENY");
  response.headers.emplace_back("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
  response.headers.emplace_back("Referrer-Policy", "no-referrer");
  if (dashboard_request(request, response)) return;
  if (request.method == "POST") {
    response.status = 405;
    response.body = "only GET here\n";
    return;
  }
  response.status = http_get(request, response.body, response.content_type);
}

bool Master::dashboard_request(const common::HttpRequest& request, common::HttpResponse& response) {
  const std::string_view path = request.path();
  const bool page = path == "/" || path == "/dashboard";
  if (path == "/dashboard.js" || path == "/dashboard.css") {
    serve_asset(*asset(path), response);  // nothing secret: served to the sign-in page too
    return true;
  }
  if (path == "/logout") {
    response.headers.emplace_back("Set-Cookie", std::string(kCookieName) +
                                                    "=; Path=/; HttpOnly; SameSite=Strict; "
                                                    "Max-Age=0");
    redirect(response, "/login");
    return true;
  }
  // The token presented once, in the form or as ?token= on a page's address: it becomes the
  // cookie, and the browser is sent to the address without it, so it stays out of its history.
  std::string presented;
  if (path == "/login" && request.method == "POST")
    presented = request.form_field("token");
  else if (page)
    presented = request.query_parameter("token");
  if (!presented.empty() || (path == "/login" && request.method == "POST")) {
    while (!presented.empty() && std::isspace(static_cast<unsigned char>(presented.back())))
      presented.pop_back();
    if (token_ && !common::constant_time_equal(presented, *token_)) {
      login_page(response, 401, "That is not the cluster token.");
      return true;
    }
    if (token_)
      response.headers.emplace_back("Set-Cookie", std::string(kCookieName) + "=" +
                                                      dashboard_cookie() +
                                                      "; Path=/; HttpOnly; SameSite=Strict");
    redirect(response, path == "/login" ? "/" : std::string(path));
    return true;
  }
  if (path == "/login") {
    if (request.method != "GET" && request.method != "HEAD") return false;
    login_page(response, 200, "");
    return true;
  }
  if (!page && !path.starts_with("/api/")) return false;
  if (request.method == "POST") return false;
  if (!http_allowed(request)) {
    if (page) {
      login_page(response, 401, "");
    } else {
      response.status = 401;
      response.content_type = "application/json";
      response.body = R"({"error":"sign in with the cluster token"})";
    }
    return true;
  }
  if (page) {
    serve_asset(*asset("/"), response);
    return true;
  }
  response.headers.emplace_back("Cache-Control", "no-store");
  response.content_type = "application/json";
  if (path == "/api/dashboard") {
    response.status = 200;
    response.body = dashboard_json(static_cast<std::int64_t>(number_parameter(request, "since")));
    return true;
  }
  if (path == "/api/output") {
    nlohmann::json output = telemetry_->output_json(number_parameter(request, "job"),
                                                    number_parameter(request, "task"));
    response.status = output.is_null() ? 404 : 200;
    response.body = output.is_null()
                        ? R"({"error":"no output is kept for this task"})"
                        : output.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return true;
  }
  response.status = 404;
  response.body = R"({"error":"no such endpoint"})";
  return true;
}

std::string Master::dashboard_json(std::int64_t since_ms) {
  const auto now = Clock::now();
  wire::RegistryReply reply;
  registry_.fill(reply, now);
  nlohmann::json servers = nlohmann::json::array();
  for (const auto& e : reply.servers()) {
    const auto& d = e.server();
    const std::string state = !e.connected()                          ? "unreachable"
                              : scheduler_.draining(d.server_id())    ? "draining"
                              : scheduler_.server_held(d.server_id()) ? "held"
                                                                      : "connected";
    nlohmann::json dependencies = nullptr;
    if (!e.dependencies().manifest_version().empty())
      dependencies = {{"state", e.dependencies().in_progress() ? "syncing"
                                : e.dependencies().satisfied() ? "satisfied"
                                                               : "not satisfied"},
                      {"summary", e.dependencies().summary()}};
    servers.push_back({{"server_id", d.server_id()},
                       {"hostname", d.hostname()},
                       {"address", d.address()},
                       {"pid", d.pid()},
                       {"capacity", d.capacity()},
                       {"busy_slots", e.busy_slots()},
                       {"labels", d.labels()},
                       {"version", d.build().library_version()},
                       {"registered_at_ms", e.registered_at_ms()},
                       {"last_heartbeat_ms", e.last_heartbeat_ms()},
                       {"reserved_by", e.reserved_by()},
                       {"state", state},
                       {"dependencies", dependencies}});
  }
  nlohmann::json clients = nlohmann::json::array();
  for (const auto& c : scheduler_.client_summaries()) {
    if (ServiceHost::is_service_session(c.session)) continue;  // listed under services
    nlohmann::json job = telemetry_->job_json(c.job_id);
    clients.push_back({{"job_id", c.job_id},
                       {"client", c.name},
                       {"program", c.image_name},
                       {"outstanding", c.outstanding},
                       {"completed", job["completed"]},
                       {"failed", job["failed"]},
                       {"reserved", c.reserved}});
  }
  nlohmann::json services = nlohmann::json::array();
  if (published_) {
    wire::ServicesReply listed;
    published_->list(listed);
    for (const auto& s : listed.status_json())
      services.push_back(nlohmann::json::parse(s, nullptr, false));
  }
  nlohmann::json store = nullptr;
  if (store_) {
    const StoreCounters c = store_->counters();
    store = {{"files", c.files},
             {"bytes", c.live_bytes},
             {"reachable", c.redis_reachable},
             {"sweeps", c.sweeps},
             {"sweep_failures", c.sweep_failures},
             {"files_removed", c.files_removed}};
  }
  const auto& counters = scheduler_.counters();
  nlohmann::json out = {{"master",
                         {{"version", common::library_version()},
                          {"started_ms", to_epoch_ms(started_at_, now)},
                          {"now_ms", to_epoch_ms(now, now)},
                          {"dependency_manifest", manifest_->version()}}},
                        {"totals",
                         {{"queued", scheduler_.queued()},
                          {"running", scheduler_.running()},
                          {"clients", clients.size()},
                          {"submitted", counters.submitted},
                          {"succeeded", counters.succeeded},
                          {"failed", counters.failed},
                          {"rerun", counters.rerun}}},
                        {"servers", servers},
                        {"tasks", telemetry_->tasks_json(since_ms)},
                        {"clients", clients},
                        {"services", services},
                        {"store", store},
                        {"images_bytes", images_.total_bytes()}};
  // Program output and exception messages are arbitrary bytes: invalid UTF-8 is replaced.
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void Master::logs_request(const wire::LogsRequest& request, wire::Envelope& reply) const {
  const nlohmann::json output = telemetry_->output_json(request.job_id(), request.task_id());
  if (output.is_null()) {
    reply.mutable_error()->set_message(
        "the master keeps no output of task " +
        (request.job_id() != 0 ? std::to_string(request.job_id()) + "." : std::string()) +
        std::to_string(request.task_id()) +
        " (it printed nothing, or its lines were dropped: task_output_bytes, "
        "task_output_tasks_per_job)");
    return;
  }
  auto* logs = reply.mutable_logs_reply();
  logs->set_job_id(output["job_id"].get<std::uint64_t>());
  logs->set_task_id(output["task_id"].get<std::uint64_t>());
  logs->set_truncated(output["truncated"].get<bool>());
  for (const auto& line : output["lines"]) {
    auto* out = logs->add_lines();
    out->set_is_stderr(line["stderr"].get<bool>());
    out->set_text(line["text"].get<std::string>());
  }
}

}  // namespace clupy::master
