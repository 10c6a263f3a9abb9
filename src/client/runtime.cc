#include "client/runtime.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>

#include "base/sha256.hpp"
#include "clupy/errors.hpp"
#include "clupy/service.hpp"
#include "common/auth.hpp"
#include "common/dial.hpp"
#include "common/handshake.hpp"
#include "common/image_transfer.hpp"
#include "common/log.hpp"
#include "common/master_locator.hpp"
#include "common/task_result.hpp"
#include "common/version.hpp"
#include "deps/manifest.hpp"
#include "deps/program_check.hpp"
#include "worker/worker_loop.hpp"

namespace clupy::client {
namespace {

auto log() { return common::logger("client"); }

std::mutex& instance_mutex() {
  static std::mutex m;
  return m;
}
Runtime*& instance() {
  static Runtime* runtime = nullptr;
  return runtime;
}

}  // namespace

Runtime::Runtime() = default;

Runtime::~Runtime() { stop(); }

bool Runtime::initialized() {
  std::lock_guard lock(instance_mutex());
  return instance() != nullptr;
}

Runtime& Runtime::get() {
  std::lock_guard lock(instance_mutex());
  if (instance() == nullptr)
    throw Error(
        "clupy::parallel was called before clupy::init: add `clupy::init(argc, argv);` "
        "as the first line of main()");
  return *instance();
}

void Runtime::initialize(int, char**) {
  // `clupy --publish` starts the program this way to learn its exports (docs/services.md).
  if (const char* describe = std::getenv("CLUPY_DESCRIBE_EXPORTS"); describe && *describe) {
    std::cout << detail::describe_exports() << std::endl;
    std::_Exit(0);
  }
  if (const char* fd = std::getenv("CLUPY_WORKER_FD"); fd && *fd) {
    const int worker_fd = std::atoi(fd);
    ::unsetenv("CLUPY_WORKER_FD");
    worker::run_worker_loop(worker_fd);
  }
  std::lock_guard lock(instance_mutex());
  if (instance() != nullptr) return;

  const char* config_path = std::getenv("CLUPY_CLIENT_CONFIG");
  common::ClientConfig config = common::load_client_config(config_path ? config_path : "");
  common::set_log_level(common::parse_log_level(config.log_level));
  if (const char* url = std::getenv("CLUPY_MASTER_URL"); url && *url) config.master_url = url;
  if (const char* file = std::getenv("CLUPY_DEPENDENCY_FILE"); file && *file)
    config.dependency_file = file;
  if (const char* check = std::getenv("CLUPY_DEPENDENCY_CHECK"); check && *check) {
    const std::string text = check;
    if (text == "warn")
      config.dependency_check = common::DependencyCheck::kWarn;
    else if (text == "error")
      config.dependency_check = common::DependencyCheck::kError;
    else if (text == "off")
      config.dependency_check = common::DependencyCheck::kOff;
    else
      throw ConfigError("CLUPY_DEPENDENCY_CHECK: expected warn, error or off, got '" + text + "'");
  }

  auto runtime = std::make_unique<Runtime>();
  runtime->connect(config);
  instance() = runtime.release();
  // At exit, before static destructors tear down the loggers the runtime still uses.
  std::atexit([] { Runtime::shutdown_all(); });
}

void Runtime::shutdown_all() {
  Runtime* runtime = nullptr;
  {
    std::lock_guard lock(instance_mutex());
    runtime = instance();
    instance() = nullptr;
  }
  delete runtime;
}

void Runtime::connect(const common::ClientConfig& config) {
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) throw Error("cannot find this program's executable (/proc/self/exe)");
  image_path_.assign(exe, static_cast<std::size_t>(n));
  image_name_ = std::filesystem::path(image_path_).filename().string();
  auto digest = base::sha256_file("/proc/self/exe");
  if (!digest) throw Error("cannot read this program's executable " + image_path_);
  image_sha256_ = *digest;

  io_thread_ = std::thread([this] { io_.run(); });
  max_frame_size_ = config.max_frame_size;

  common::DialOptions dial;
  dial.role = wire::ROLE_CLIENT;
  dial.tls = config.tls;
  dial.max_frame_size = config.max_frame_size;
  dial.timeout = config.connect_timeout;
  auto try_dial = [&](const std::string& url, std::optional<std::string> token) {
    dial.address = common::parse_master_url(url);
    dial.token = std::move(token);
    return asio::co_spawn(io_, common::dial_master(dial), asio::use_future).get();
  };

  common::Dialed dialed;
  if (!config.master_url.empty()) {
    std::string url = config.master_url;
    if (common::is_zk_url(url)) {
      // Standby masters: dial the elected one, and follow the election later (fail_over).
      locator_ = std::make_unique<common::MasterLocator>(url, config.coordination);
      const common::MasterLocation where = locator_->resolve(config.connect_timeout);
      url = where.url;
      master_token_ = where.fencing_token;
      failover_timeout_ = std::max<std::chrono::milliseconds>(
          std::chrono::seconds(30), 4 * config.coordination.session_timeout);
    }
    dialed = try_dial(url, common::resolve_token(config.token_file));
    master_token_ = std::max(master_token_, dialed.master.fencing_token);
    set_master(dial.address.to_string(), dialed.master);
  } else {
    try {
      dialed = try_dial("clupy://localhost:7878", common::resolve_token(config.token_file));
      set_master(dial.address.to_string(), dialed.master);
    } catch (const ConnectionError& nobody_there) {
      log()->debug("no master on localhost:7878 ({}); starting an embedded cluster",
                   nobody_there.what());
      embedded_ = std::make_unique<EmbeddedCluster>();
      dial.tls = common::TlsConfig{};
      dialed = try_dial(embedded_->master_url(), common::read_token_file(embedded_->token_file()));
      set_master(embedded_->master_url(), dialed.master);
    }
  }
  connection_ = dialed.connection;
  dial_options_ = dial;
  {
    std::lock_guard lock(mu_);
    connected_ = true;
  }
  // An embedded cluster runs on this machine: there is nothing to compare.
  if (config.dependency_check != common::DependencyCheck::kOff && !embedded_) {
    try {
      needs_ = std::make_unique<wire::ProgramNeeds>(
          deps::read_program_needs_cached("/proc/self/exe", image_sha256_));
      needs_->set_strict(config.dependency_check == common::DependencyCheck::kError);
    } catch (const std::exception& e) {
      log()->warn("cannot read what this program needs ({}); servers are not checked against it",
                  e.what());
    }
  }
  load_job_packages(config);
  open_job();
}

void Runtime::set_master(std::string url, const common::PeerIdentity& master) {
  const bool takes_inputs = master.build.protocol_minor() >= common::kTaskInputsMinor;
  if (!takes_inputs)
    log()->info("the master at {} speaks {}: futures given as arguments are waited for here", url,
                common::describe(master.build));
  master_takes_inputs_.store(takes_inputs, std::memory_order_release);
  std::lock_guard lock(master_mu_);
  master_url_ = std::move(url);
  services_ = master.services;
}

std::string Runtime::master_url() const {
  std::lock_guard lock(master_mu_);
  return master_url_;
}

wire::ClusterServices Runtime::services() const {
  std::lock_guard lock(master_mu_);
  return services_;
}

asio::awaitable<void> Runtime::fail_over(std::string reason) {
  log()->warn("lost the master at {} ({}); waiting for the next elected master", master_url(),
              reason);
  const auto deadline = std::chrono::steady_clock::now() + failover_timeout_;
  asio::steady_timer pause(io_);
  while (!stopped_ && std::chrono::steady_clock::now() < deadline) {
    auto where = locator_->current();
    if (where && where->fencing_token > master_token_) {
      try {
        dial_options_.address = common::parse_master_url(where->url);
        common::Dialed dialed = co_await common::dial_master(dial_options_);
        // The master's own word beats ZooKeeper's (a lagging follower may still name the
        // master we lost): a token not above the lost master's is a deposed master's.
        const std::int64_t token = dialed.master.fencing_token;
        if (token != 0 && token <= master_token_) {
          dialed.connection->close("deposed master");
          log()->debug("master {} presents fencing token {}, not above {}: deposed, waiting",
                       where->url, token, master_token_);
        } else {
          master_token_ = std::max(token, where->fencing_token);
          adopt(std::move(dialed));
          co_return;
        }
      } catch (const std::exception& e) {
        log()->debug("new master {} not reachable yet: {}", where->url, e.what());
      }
    }
    pause.expires_after(std::chrono::milliseconds(200));
    boost::system::error_code ignored;
    co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  if (!stopped_)
    fail_everything("lost the connection to the master at " + master_url() + " (" + reason +
                    ") and no new master was elected within " +
                    std::to_string(failover_timeout_.count()) +
                    " ms; the task may or may not have run");
}

void Runtime::adopt(common::Dialed dialed) {
  connection_ = dialed.connection;
  set_master(dial_options_.address.to_string(), dialed.master);
  connection_->start(
      [this](wire::Envelope& message) {
        if (message.has_job_opened())
          on_reopened(message.job_opened());
        else
          on_message(message);
      },
      [this](const std::string& reason) { on_closed(reason); });
  send_open_job();
}

void Runtime::send_open_job() {
  wire::Envelope open;
  open.set_request_id(1);
  auto* job = open.mutable_open_job();
  job->set_image_sha256(image_sha256_);
  job->set_image_size(std::filesystem::file_size(image_path_));
  job->set_image_name(image_name_);
  job->set_client_name(common::self_description());
  if (needs_) *job->mutable_needs() = *needs_;
  for (const auto& package : job_packages_) *job->add_packages() = package;
  for (const auto& library : job_libraries_) *job->add_libraries() = library.description;
  open_job_sent_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  connection_->send(open);
}

void Runtime::on_reopened(const wire::JobOpened& job) {
  if (job.need_image()) upload_image();
  std::size_t resubmitted = 0;
  std::vector<std::shared_ptr<Dependent>> resolve_here;
  {
    std::lock_guard lock(mu_);
    window_.set_size(job.window());
    push_threshold_.store(job.push_threshold(), std::memory_order_relaxed);
    // The new master knows nothing of the results the old one's servers held (they freed
    // them): values already fetched are in their futures; dependents carry them from here.
    held_.clear();
    pushed_outcomes_.clear();
    // Every task without a result goes to the new master (at-least-once: it may have run on a
    // server of the old one). Tasks held back by max_in_flight stay held.
    std::vector<std::uint64_t> ids;
    for (auto& [id, pending] : pending_) {
      if (pending.pushed_call && job.push_threshold() == 0) [[unlikely]] {
        // This master takes no pushed calls: the call travels in the spec.
        pending.spec.set_call(*pending.pushed_call);
        pending.spec.clear_pushed_call_size();
        pending.spec.clear_function_name();
        pending.pushed_call.reset();
      }
      if (!pending.held) ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end());
    outbox_.clear();
    const bool takes_inputs = master_takes_inputs_.load(std::memory_order_acquire);
    for (auto id : ids) {
      Pending& pending = pending_.at(id);
      if (pending.dependent && !takes_inputs) {
        // This master would run the task without its inputs: they are waited for here, and
        // the task is submitted again (a new id) with their values in it.
        pending.dependent->wait_here = true;
        pin_inputs(*pending.dependent);
        resolve_here.push_back(std::move(pending.dependent));
        free_slot(pending);
        pending_.erase(id);
        window_.resolve_now();
        continue;
      }
      outbox_.push_back(pending.spec);
      ++resubmitted;
    }
    connected_ = true;
    reconnecting_ = false;
    flush_posted_ = false;
    schedule_flush();
  }
  log()->warn("reconnected to the new master at {}; resubmitted {} unfinished task(s)",
              master_url(), resubmitted);
  for (auto& dependent : resolve_here) resolve(std::move(dependent));
  keep_alive();
}

void Runtime::open_job() {
  // The reply is awaited here, in the user's thread, so init returns with the job open.
  auto opened = std::make_shared<std::promise<wire::JobOpened>>();
  auto result = opened->get_future();
  asio::post(io_, [this, opened] {
    connection_->start(
        [this, opened](wire::Envelope& message) {
          if (message.has_job_opened()) {
            opened->set_value(message.job_opened());
            return;
          }
          if (message.has_error() && message.request_id() == 1) {
            opened->set_exception(std::make_exception_ptr(
                Error("the master refused the job: " + message.error().message())));
            return;
          }
          on_message(message);
        },
        [this, opened](const std::string& reason) {
          try {
            opened->set_exception(std::make_exception_ptr(ConnectionError(
                "the master at " + master_url() + " closed the connection: " + reason)));
          } catch (const std::future_error&) {
            // The job was opened long ago: this is an ordinary disconnection.
          }
          on_closed(reason);
        });
    send_open_job();
  });
  // 30 s, or longer while servers report progress installing the job's packages.
  const auto since_epoch_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  const std::int64_t asked_ms = since_epoch_ms();
  while (result.wait_for(std::chrono::milliseconds(200)) != std::future_status::ready) {
    if (since_epoch_ms() - std::max(asked_ms, last_package_progress_ms_.load()) > 30'000)
      throw ConnectionError("the master at " + master_url() + " did not answer OpenJob in 30 s");
  }
  wire::JobOpened job = result.get();
  if (job.has_verdicts()) {
    report_verdicts(job.verdicts());
    // Before any task is sent: a program no server can start fails here, saying why.
    if (job.verdicts().no_server_can_run())
      throw Error(job.verdicts().message() + shipping_hint(job.verdicts()));
  }
  {
    std::lock_guard lock(mu_);
    window_.set_size(job.window());
  }
  push_threshold_.store(job.push_threshold(), std::memory_order_relaxed);
  keepalive_interval_ =
      std::chrono::milliseconds(std::max<std::uint32_t>(100, job.keepalive_interval_ms()));
  // A master that goes silent (a partition) fails the connection, and so every unfinished
  // future, once a keep-alive has waited two intervals (at least 2 s) for its acknowledgement:
  // within the master's reservation_ttl of the cut, when the master releases this client's
  // reservations.
  const auto unacknowledged =
      std::max<std::chrono::milliseconds>(2 * keepalive_interval_, std::chrono::seconds(2));
  asio::post(io_, [this, timeout = unacknowledged] {
    if (connection_) connection_->transport().set_unacknowledged_timeout(timeout);
  });
  asio::post(io_, [this, need = job.need_image()] {
    if (need) upload_image();
    keep_alive();
  });
}

void Runtime::upload_image() {
  // From /proc/self/exe, not the path: the file may have been rebuilt since we started.
  if (auto sent = common::send_image(*connection_, "/proc/self/exe", image_sha256_))
    log()->debug("uploaded program image {} ({} bytes)", image_name_, *sent);
  else
    log()->error("cannot read this program's executable to upload it");
}

void Runtime::keep_alive() {
  keepalive_timer_.expires_after(keepalive_interval_);
  keepalive_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || !connection_->is_open()) return;
    wire::Envelope ping;
    ping.mutable_keep_alive();
    connection_->send(ping);
    keep_alive();
  });
}

void Runtime::submit(std::string call, const std::string& function_name, const Options& options,
                     const std::shared_ptr<detail::CallSite>& site,
                     std::shared_ptr<detail::FutureStateBase> state, const std::string& service) {
  enqueue(std::move(call), function_name, options, site, std::move(state), service, nullptr, {});
}

bool Runtime::enqueue(std::string call, const std::string& function_name, const Options& options,
                      const std::shared_ptr<detail::CallSite>& site,
                      std::shared_ptr<detail::FutureStateBase> state, const std::string& service,
                      std::shared_ptr<Dependent> dependent,
                      std::vector<std::pair<std::uint64_t, const detail::CallInput*>> references) {
  std::unique_lock lock(mu_);
  // An input can be named only once its own spec is on its way to the master (specs leave in
  // order), not while max_in_flight holds it here.
  for (const auto& [input_id, input] : references) {
    auto found = pending_.find(input_id);
    if (found == pending_.end() ? !held_.contains(input_id) : found->second.held) return false;
  }
  // Backpressure: a client may not have more than the master's window outstanding. Not on the
  // I/O thread (a future's callback submitting more work): it alone can open the window.
  if (std::this_thread::get_id() != io_thread_.get_id())
    window_.wait_for_room(lock, [&] { return !connected_ || stopped_; });
  const std::uint64_t id = next_task_id_++;
  auto fail_now = [&](FailureKind kind, std::string message) {
    if (dependent) unpin_inputs(*dependent);
    lock.unlock();
    Failure f;
    f.kind = kind;
    f.function = function_name;
    f.task_id = id;
    f.message = std::move(message);
    state->complete_with_failure(std::move(f));
  };
  if (call.size() > max_frame_size_ / 2) {
    fail_now(FailureKind::kProtocol,
             "the call's arguments take " + std::to_string(call.size()) +
                 " bytes, more than half of max_frame_size (" + std::to_string(max_frame_size_) +
                 "): pass large data through clupy::cluster_store() instead");
    return true;
  }
  if ((!connected_ && !reconnecting_) || stopped_) {
    fail_now(FailureKind::kUnavailable, stopped_ ? "clupy::shutdown() was called"
                                                 : "not connected to the master at " +
                                                       master_url() + ": " + disconnect_reason_);
    return true;
  }
  window_.add();
  state->set_task_id(id);
  Pending& pending = pending_[id];
  pending.state = state;
  pending.site = site;
  pending.function_name = function_name;
  wire::TaskSpec spec;
  spec.set_task_id(id);
  // A large call without inputs stays here until the master places its task (pushed calls).
  const std::uint64_t push_threshold = push_threshold_.load(std::memory_order_relaxed);
  if (push_threshold != 0 && call.size() >= push_threshold && !dependent && service.empty())
      [[unlikely]] {
    spec.set_pushed_call_size(call.size());
    spec.set_function_name(function_name);
    pending.pushed_call = std::make_shared<const std::string>(std::move(call));
  } else {
    spec.set_call(std::move(call));
  }
  auto* o = spec.mutable_options();
  o->set_server_count(options.server_count);
  o->set_timeout_ms(static_cast<std::uint32_t>(options.timeout.count()));
  o->set_retries(options.retries);
  for (const auto& [k, v] : options.labels) (*o->mutable_labels())[k] = v;
  if (!service.empty()) o->set_service(service);
  for (const auto& [input_id, input] : references) {
    wire::TaskInput* ref = spec.add_inputs();
    ref->set_task_id(input_id);
    ref->set_position(input->position);
    ref->set_index(input->index);
    // Finished, its result held by a server: the master knows where (protocol 1.4).
    if (!pending_.contains(input_id)) ref->set_held(true);
  }
  if (dependent) pending.dependent = dependent;
  if (site && site->limit_ > 0 && site->in_flight_ >= site->limit_) {
    pending.spec = std::move(spec);
    pending.held = true;
    site->held_.push_back(id);
  } else {
    if (site) ++site->in_flight_;
    if (locator_) pending.spec = spec;  // kept to resubmit after a failover
    outbox_.push_back(std::move(spec));
    // Named in a spec that is on its way: the master now holds the inputs for this task.
    if (dependent) unpin_inputs(*dependent);
    schedule_flush();
  }
  lock.unlock();
  state->set_cancel_hook([this, id] { cancel(id); });
  return true;
}

void Runtime::submit_with_inputs(std::string call, const std::string& function_name,
                                 const Options& options,
                                 const std::shared_ptr<detail::CallSite>& site,
                                 std::shared_ptr<detail::FutureStateBase> state,
                                 std::vector<detail::CallInput> inputs) {
  auto dependent = std::make_shared<Dependent>();
  dependent->call = std::move(call);
  dependent->function_name = function_name;
  dependent->options = options;
  dependent->site = site;
  dependent->state = std::move(state);
  dependent->inputs = std::move(inputs);
  {
    std::lock_guard lock(mu_);
    pin_inputs(*dependent);
  }
  // Cancelled while it waits here: dropped the next time an input completes (resolve).
  resolve(std::move(dependent));
}

void Runtime::pin_inputs(Dependent& dependent) {
  for (const auto& input : dependent.inputs) {
    const std::uint64_t input_id = input.state->task_id();
    auto found = pending_.find(input_id);
    if (input_id == 0) continue;
    if (found == pending_.end()) {
      // Finished and held by a server: kept there while this task may still name it.
      if (auto held = held_.find(input_id); held != held_.end()) {
        ++held->second.pins;
        dependent.pinned.push_back(input_id);
      }
      continue;
    }
    ++found->second.pins;
    dependent.pinned.push_back(input_id);
    // The program may drop its futures of the input from now on: then its value need not come.
    input.state->set_unobserved_hook([this, input_id] {
      std::lock_guard lock(mu_);
      release_if_unobserved(input_id);
    });
  }
}

void Runtime::unpin_inputs(Dependent& dependent) {
  for (const std::uint64_t input_id : dependent.pinned) {
    auto found = pending_.find(input_id);
    if (found == pending_.end()) {
      if (auto held = held_.find(input_id); held != held_.end() && held->second.pins > 0)
        if (--held->second.pins == 0) release_held_if_unused(input_id);
      continue;
    }
    if (found->second.pins == 0) continue;
    if (--found->second.pins == 0) release_if_unobserved(input_id);
  }
  dependent.pinned.clear();
}

void Runtime::release_if_unobserved(std::uint64_t task_id) {
  auto found = pending_.find(task_id);
  if (found == pending_.end()) {
    if (auto held = held_.find(task_id); held != held_.end()) {
      held->second.dropped = true;
      release_held_if_unused(task_id);
    }
    return;
  }
  Pending& p = found->second;
  if (p.held || p.released || p.pins > 0 || reconnecting_ || p.state->observed()) return;
  p.released = true;
  release_outbox_.push_back(task_id);
  schedule_flush();
}

void Runtime::resolve(std::shared_ptr<Dependent> dependent) {
  detail::FutureStateBase& state = *dependent->state;
  auto give_up = [&](Failure failure) {
    {
      std::lock_guard lock(mu_);
      unpin_inputs(*dependent);
    }
    failure.function = dependent->function_name;
    state.complete_with_failure(std::move(failure));
  };
  if (state.status() != detail::FutureStateBase::Status::kPending) {  // cancelled meanwhile
    std::lock_guard lock(mu_);
    unpin_inputs(*dependent);
    return;
  }
  std::vector<std::string> values;
  values.reserve(dependent->inputs.size());
  std::vector<detail::ArgumentFill> fills;
  std::vector<std::pair<std::uint64_t, const detail::CallInput*>> references;
  const detail::CallInput* wait_for = nullptr;
  for (const auto& input : dependent->inputs) {
    switch (input.state->status()) {
      case detail::FutureStateBase::Status::kSucceeded:
        if (!dependent->wait_here && input.state->task_id() != 0 &&
            master_takes_inputs_.load(std::memory_order_acquire)) {
          std::lock_guard lock(mu_);
          if (held_.contains(input.state->task_id())) {
            // Its bytes stay on the server that holds them; the master names it there.
            references.emplace_back(input.state->task_id(), &input);
            break;
          }
        }
        values.emplace_back();
        input.encode_value(values.back());
        fills.push_back({input.position, input.index, values.back()});
        break;
      case detail::FutureStateBase::Status::kFailed: {
        const std::uint64_t input_id = input.state->task_id();
        Failure f;
        f.kind = FailureKind::kDependency;
        f.message = (input_id != 0 ? "input task " + std::to_string(input_id)
                                   : std::string("an input future made in this program")) +
                    " failed: " + input.state->failure().to_string();
        give_up(std::move(f));
        return;
      }
      case detail::FutureStateBase::Status::kPending:
        if (dependent->wait_here || input.state->task_id() == 0 ||
            !master_takes_inputs_.load(std::memory_order_acquire)) {
          if (wait_for == nullptr) wait_for = &input;
        } else {
          references.emplace_back(input.state->task_id(), &input);
        }
        break;
    }
  }
  if (wait_for == nullptr) {
    std::string call;
    try {
      call =
          fills.empty() ? dependent->call : detail::splice_call_arguments(dependent->call, fills);
    } catch (const std::exception& e) {
      Failure f;
      f.kind = FailureKind::kProtocol;
      f.message = std::string("cannot put an input's value into the call: ") + e.what();
      give_up(std::move(f));
      return;
    }
    if (enqueue(std::move(call), dependent->function_name, dependent->options, dependent->site,
                dependent->state, "", references.empty() ? nullptr : dependent, references)) {
      if (references.empty()) {
        std::lock_guard lock(mu_);
        unpin_inputs(*dependent);
      }
      return;
    }
    // An input is held back here by max_in_flight: wait for it here.
    for (const auto& [input_id, input] : references) {
      std::lock_guard lock(mu_);
      auto found = pending_.find(input_id);
      if (found == pending_.end() || found->second.held) {
        wait_for = input;
        break;
      }
    }
    if (wait_for == nullptr) wait_for = references.front().second;
  }
  // Runs at once, on this thread, if the input completed meanwhile.
  wait_for->state->add_callback([this, dependent] { resolve(dependent); });
}

void Runtime::schedule_flush() {
  if (flush_posted_) return;
  flush_posted_ = true;
  asio::post(io_, [this] { flush(); });
}

void Runtime::flush() {
  std::vector<wire::TaskSpec> tasks;
  std::vector<std::uint64_t> cancels;
  std::vector<std::uint64_t> releases;
  {
    std::lock_guard lock(mu_);
    flush_posted_ = false;
    if (reconnecting_) return;  // on_reopened sends everything
    tasks.swap(outbox_);
    cancels.swap(cancel_outbox_);
    releases.swap(release_outbox_);
  }
  if (!tasks.empty()) {
    // Everything submitted since the last flush travels as one message.
    wire::Envelope message;
    auto* submit = message.mutable_submit_tasks();
    submit->mutable_tasks()->Reserve(static_cast<int>(tasks.size()));
    for (auto& t : tasks) *submit->add_tasks() = std::move(t);
    connection_->send(std::move(message));
  }
  if (!cancels.empty()) {
    wire::Envelope message;
    for (auto id : cancels) message.mutable_cancel_tasks()->add_task_ids(id);
    connection_->send(message);
  }
  if (!releases.empty()) {
    // After the tasks: a release never overtakes a task that names the released input.
    wire::Envelope message;
    for (auto id : releases) message.mutable_release_results()->add_task_ids(id);
    connection_->send(message);
  }
}

void Runtime::cancel(std::uint64_t task_id) {
  std::lock_guard lock(mu_);
  auto it = pending_.find(task_id);
  if (it == pending_.end()) return;
  if (it->second.held) {
    // Never left this process.
    auto& held = it->second.site->held_;
    held.erase(std::find(held.begin(), held.end(), task_id));
    if (it->second.dependent) unpin_inputs(*it->second.dependent);
    pending_.erase(it);
    window_.resolve_now();
    return;
  }
  cancel_outbox_.push_back(task_id);
  schedule_flush();
}

void Runtime::on_message(wire::Envelope& message) {
  switch (message.body_case()) {
    case wire::Envelope::kTaskResults:
      on_results(*message.mutable_task_results());
      break;
    case wire::Envelope::kTaskOutput:
      print_output(message.task_output());
      break;
    case wire::Envelope::kCallTickets:
      on_call_tickets(message.call_tickets());
      break;
    case wire::Envelope::kResultBytes:
      if (auto request = master_requests_.find(message.request_id());
          request != master_requests_.end()) {
        auto handler = std::move(request->second);
        master_requests_.erase(request);
        handler(message);
      }
      break;
    case wire::Envelope::kImageFailed:
      log()->error("the master could not store this program's image: {}",
                   message.image_failed().reason());
      break;
    case wire::Envelope::kProgramVerdicts:
      report_verdicts(message.program_verdicts());
      break;
    case wire::Envelope::kJobPackagesState:
      report_job_packages(message.job_packages_state());
      break;
    case wire::Envelope::kLibraryUploadRequest:
      upload_libraries(message.library_upload_request());
      break;
    default:
      log()->debug("ignoring message {} from the master", static_cast<int>(message.body_case()));
      break;
  }
}

void Runtime::report_verdicts(const wire::ProgramVerdicts& verdicts) {
  if (!verdicts.message().empty()) log()->warn("{}", verdicts.message());
  for (const auto& server : verdicts.servers()) {
    if (server.refused()) continue;  // in the message above
    for (const auto& difference : server.differences())
      log()->warn("server {} differs from this machine: {}", server.server_id(), difference.text());
  }
}

void Runtime::free_slot(Pending& pending) {
  if (!pending.site || pending.site->limit_ == 0) return;
  --pending.site->in_flight_;
  if (pending.site->held_.empty()) return;
  const std::uint64_t next = pending.site->held_.front();
  pending.site->held_.pop_front();
  Pending& waiting = pending_.at(next);
  waiting.held = false;
  ++pending.site->in_flight_;
  if (locator_)
    outbox_.push_back(waiting.spec);
  else
    outbox_.push_back(std::move(waiting.spec));
  if (waiting.dependent) unpin_inputs(*waiting.dependent);
  schedule_flush();
}

void Runtime::on_results(wire::TaskResults& results) {
  // A task's output all arrives before its result: its last line is complete now.
  for (const auto& result : results.results()) worker_output_.task_done(result.task_id());
  std::vector<Completion> done;
  done.reserve(static_cast<std::size_t>(results.results_size()));
  std::vector<std::shared_ptr<Dependent>> resubmit;
  std::vector<std::uint64_t> pushed;  // tasks whose call this process pushed
  {
    std::lock_guard lock(mu_);
    for (auto& result : *results.mutable_results()) {
      auto it = pending_.find(result.task_id());
      if (it == pending_.end()) continue;
      Pending& pending = it->second;
      free_slot(pending);
      if (result.inputs_gone() && pending.dependent) [[unlikely]] {
        // An input finished on the master before this task arrived there; its value came
        // before this answer. Submitted again (a new id), with what is known here now.
        pending.dependent->wait_here = true;
        pin_inputs(*pending.dependent);
        resubmit.push_back(std::move(pending.dependent));
        pending_.erase(it);
        window_.resolve();
        continue;
      }
      if (result.has_held()) [[unlikely]]
        held_[result.task_id()] = HeldEntry{result.held(), pending.pins, false};
      if (pending.pushed_call) [[unlikely]]
        pushed.push_back(result.task_id());
      done.push_back(
          {std::move(pending.state), std::move(result), std::move(pending.function_name)});
      pending_.erase(it);
      window_.resolve();
    }
    window_.settle();
  }
  // Futures complete outside the lock: their callbacks may submit more tasks. Their waiting
  // threads are woken after the whole batch has settled (see DeferredWakeups).
  {
    detail::FutureStateBase::DeferredWakeups deferred;
    complete_all(done);
  }
  for (auto& c : done) c.state->wake_waiters();
  for (auto& dependent : resubmit) resolve(std::move(dependent));
  if (!pushed.empty()) [[unlikely]]
    forget_pushes(std::move(pushed));
}

void Runtime::complete_all(std::vector<Completion>& done) {
  for (auto& c : done) {
    const std::uint64_t id = c.result.task_id();
    if (c.result.has_held()) [[unlikely]] {
      complete_held(c);
      continue;
    }
    if (c.result.value_withheld()) {
      // Released: no Future of it is left in this program, so no one can see this.
      Failure f;
      f.kind = FailureKind::kCancelled;
      f.task_id = id;
      f.function = c.function_name;
      f.message = "its value was not brought to this program: no Future of it was left";
      c.state->complete_with_failure(std::move(f));
      continue;
    }
    // The result is decoded from where it lies in the message, not copied out first.
    detail::OutcomeView outcome = common::read_task_result(c.result);
    if (outcome.ok) {
      c.state->complete_with_result(outcome.result);
      continue;
    }
    Failure f = std::move(outcome.failure);
    f.task_id = id;
    if (f.function.empty()) f.function = c.function_name;
    c.state->complete_with_failure(std::move(f));
  }
}

void Runtime::print_output(const wire::TaskOutput& output) {
  worker_output_.add(output.server_id(), output.task_id(), output.is_stderr(), output.text());
}

void Runtime::on_closed(const std::string& reason) {
  keepalive_timer_.cancel();
  // Fetches relayed by the master end with it.
  auto requests = std::move(master_requests_);
  master_requests_.clear();
  for (auto& [id, handler] : requests) {
    wire::Envelope lost;
    auto* failure = lost.mutable_result_bytes()->mutable_failure();
    failure->set_kind(static_cast<std::uint32_t>(FailureKind::kUnavailable));
    failure->set_message("lost the connection to the master (" + reason + ")");
    handler(lost);
  }
  worker_output_.flush_all();
  if (locator_ && !stopped_) {
    {
      std::lock_guard lock(mu_);
      connected_ = false;
      reconnecting_ = true;
    }
    asio::co_spawn(io_, fail_over(reason), asio::detached);
    return;
  }
  fail_everything(stopped_ ? "clupy::shutdown() was called"
                           : "lost the connection to the master at " + master_url() + " (" +
                                 reason + "); the task may or may not have run");
}

void Runtime::fail_everything(const std::string& why) {
  std::unordered_map<std::uint64_t, Pending> lost;
  {
    std::lock_guard lock(mu_);
    connected_ = false;
    disconnect_reason_ = why;
    lost.swap(pending_);
    outbox_.clear();
    reconnecting_ = false;
    window_.clear();
  }
  window_.wake_all();
  for (auto& [id, pending] : lost) {
    Failure f;
    f.kind = FailureKind::kUnavailable;
    f.message = why;
    f.function = pending.function_name;
    f.task_id = id;
    pending.state->complete_with_failure(std::move(f));
  }
}

void Runtime::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  window_.wake_all();
  if (io_thread_.joinable()) {
    asio::post(io_, [this] {
      keepalive_timer_.cancel();
      // Data connections too: their reads would keep the I/O thread running.
      auto links = std::move(data_links_);
      data_links_.clear();
      for (auto& [address, link] : links)
        if (link->connection) link->connection->close("client shutting down");
      if (connection_) connection_->close("client shutting down");
    });
    work_.reset();
    io_thread_.join();
  }
  fail_everything("clupy::shutdown() was called");
  if (embedded_) embedded_->stop();
}

}  // namespace clupy::client

namespace clupy {

void init(int argc, char** argv) { client::Runtime::initialize(argc, argv); }

void shutdown() { client::Runtime::shutdown_all(); }

std::string master_url() {
  return client::Runtime::initialized() ? client::Runtime::get().master_url() : std::string();
}

bool embedded_cluster() {
  return client::Runtime::initialized() && client::Runtime::get().embedded();
}

namespace detail {

std::shared_ptr<CallSite> make_call_site(unsigned max_in_flight) {
  return std::make_shared<CallSite>(max_in_flight);
}

namespace {
// The future's label (progress displays group by it); a program submits runs of the same
// function, so the last name is remembered per thread.
void label_future(FutureStateBase& state, const std::string& function_name) {
  thread_local std::string last_name;
  thread_local const std::string* last_label = nullptr;
  if (last_label == nullptr || function_name != last_name) {
    last_label = intern_label(function_name);
    last_name = function_name;
  }
  state.set_label(last_label);
}
}  // namespace

void submit_to_service(const std::string& service, std::string call,
                       const std::string& function_name, const Options& options,
                       std::shared_ptr<FutureStateBase> state) {
  label_future(*state, function_name);
  client::Runtime::get().submit(std::move(call), function_name, options, nullptr, std::move(state),
                                service);
}

void submit(std::string call, const std::string& function_name, const Options& options,
            const std::shared_ptr<CallSite>& site, std::shared_ptr<FutureStateBase> state) {
  label_future(*state, function_name);
  client::Runtime::get().submit(std::move(call), function_name, options, site, std::move(state));
}

void submit_with_inputs(std::string call, const std::string& function_name, const Options& options,
                        const std::shared_ptr<CallSite>& site,
                        std::shared_ptr<FutureStateBase> state, std::vector<CallInput> inputs) {
  label_future(*state, function_name);
  client::Runtime::get().submit_with_inputs(std::move(call), function_name, options, site,
                                            std::move(state), std::move(inputs));
}

}  // namespace detail
}  // namespace clupy
