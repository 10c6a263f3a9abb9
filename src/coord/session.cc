#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <random>

#include "coord/session_impl.hpp"

namespace clupy::coord {

namespace {

void run_events(std::shared_ptr<EventQueue> queue) {
  std::unique_lock lock(queue->mu);
  for (;;) {
    queue->cv.wait(lock, [&] { return queue->stop || !queue->tasks.empty(); });
    if (queue->tasks.empty()) return;  // stopped and drained
    auto task = std::move(queue->tasks.front());
    queue->tasks.pop_front();
    lock.unlock();
    try {
      task();
    } catch (const std::exception& e) {
      // A callback's failure must not end the event thread that every other callback needs.
      spdlog::error("coord: a callback threw: {}", e.what());
    }
    task = nullptr;  // destroy captures outside the queue lock
    lock.lock();
    ++queue->done;
    queue->cv.notify_all();
  }
}

void ignore_completion(int /*rc*/, const void* /*data*/) {}

std::once_flag log_level_once;

}  // namespace

SessionImpl::SessionImpl(SessionOptions options)
    : options_(std::move(options)), events_(std::make_shared<EventQueue>()) {}

SessionImpl::~SessionImpl() { close(); }

void SessionImpl::connect() {
  const std::string& connect = options_.connect;
  auto slash = connect.find('/');
  hosts_ = connect.substr(0, slash);
  if (slash != std::string::npos) chroot_ = connect.substr(slash);
  if (chroot_ == "/") chroot_.clear();
  if (hosts_.empty() || (!chroot_.empty() && chroot_.back() == '/')) {
    throw CoordError(CoordError::Kind::kBadArgument, "",
                     "coord: bad connect string '" + connect + "' (want host:port[,...][/chroot])");
  }
  std::call_once(log_level_once, [] { zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR); });

  if (!chroot_.empty()) {
    // ZooKeeper does not create a chroot; a short session without it does, once.
    SessionOptions boot_options = options_;
    boot_options.connect = hosts_;
    auto boot = std::make_shared<SessionImpl>(boot_options);
    boot->connect();
    boot->ensure_path(chroot_);
    boot->close();
  }

  event_thread_ = std::thread(run_events, events_);
  {
    std::lock_guard lock(events_->mu);
    events_->thread_id = event_thread_.get_id();
  }

  zhandle_t* zh =
      zookeeper_init(connect.c_str(), &SessionImpl::global_watcher,
                     static_cast<int>(options_.session_timeout.count()), nullptr, this, 0);
  if (zh == nullptr) {
    int err = errno;
    close();
    throw CoordError(
        CoordError::Kind::kBadArgument, "",
        "coord: cannot start a ZooKeeper client for '" + connect + "': " + std::strerror(err));
  }
  {
    std::lock_guard lock(mu_);
    zh_ = zh;
  }
  if (!options_.digest_auth.empty()) {
    const std::string& cred = options_.digest_auth;
    int rc = zoo_add_auth(zh, "digest", cred.data(), static_cast<int>(cred.size()),
                          &ignore_completion, nullptr);
    if (rc != ZOK) {
      close();
      throw_zk(rc, "coord: digest authentication");
    }
  }
  if (!wait_connected(Clock::now() + options_.connect_timeout)) {
    bool auth = false;
    {
      std::lock_guard lock(mu_);
      auth = auth_failed_;
    }
    close();
    if (auth) throw CoordError(CoordError::Kind::kAuthFailed, "ZAUTHFAILED", "coord: auth failed");
    throw CoordError(CoordError::Kind::kConnectionLoss, "ZCONNECTIONLOSS",
                     "coord: no ZooKeeper session with " + hosts_ + " within " +
                         std::to_string(options_.connect_timeout.count()) + " ms");
  }
}

void SessionImpl::close() {
  zhandle_t* zh = nullptr;
  {
    std::unique_lock lock(mu_);
    if (closed_) return;
    closed_ = true;
    set_state_locked(SessionState::kExpired);
    // Calls already inside the client finish (with a reply or a connection loss) before the
    // handle is freed; new ones see closed_.
    cv_.wait_until(lock, Clock::now() + options_.connect_timeout, [&] { return in_flight_ == 0; });
    zh = zh_;
  }
  // Outside mu_: zookeeper_close joins the client's threads, which may be waiting for mu_ in a
  // watcher.
  if (zh != nullptr) zookeeper_close(zh);
  {
    std::lock_guard lock(mu_);
    zh_ = nullptr;
    watches_.clear();
    cv_.notify_all();
  }
  bool self = on_event_thread();
  {
    std::lock_guard lock(events_->mu);
    events_->stop = true;
    // From one of its own callbacks the thread cannot be joined, and tasks left behind could
    // reach this object after it is gone: drop them.
    if (self) events_->tasks.clear();
    events_->cv.notify_all();
  }
  if (event_thread_.joinable()) {
    if (self) {
      event_thread_.detach();
    } else {
      event_thread_.join();
    }
  }
}

SessionState SessionImpl::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

std::int64_t SessionImpl::session_id() const {
  std::lock_guard lock(mu_);
  return client_id_.client_id;
}

std::string SessionImpl::session_password() const {
  std::lock_guard lock(mu_);
  return std::string(client_id_.passwd, sizeof(client_id_.passwd));
}

std::chrono::milliseconds SessionImpl::negotiated_timeout() const {
  std::lock_guard lock(mu_);
  return negotiated_;
}

std::uint64_t SessionImpl::add_state_listener(std::function<void(SessionState)> listener) {
  std::lock_guard lock(mu_);
  auto id = next_listener_id_++;
  auto shared = std::make_shared<std::function<void(SessionState)>>(std::move(listener));
  listeners_[id] = shared;
  if (state_ == SessionState::kExpired) post([shared] { (*shared)(SessionState::kExpired); });
  return id;
}

void SessionImpl::remove_state_listener(std::uint64_t id) {
  std::lock_guard lock(mu_);
  listeners_.erase(id);
}

void SessionImpl::post(std::function<void()> task) {
  std::lock_guard lock(events_->mu);
  if (events_->stop) return;
  events_->tasks.push_back(std::move(task));
  ++events_->posted;
  events_->cv.notify_all();
}

bool SessionImpl::on_event_thread() const {
  std::lock_guard lock(events_->mu);
  return events_->thread_id == std::this_thread::get_id();
}

void SessionImpl::drain_events() {
  if (on_event_thread()) return;
  std::unique_lock lock(events_->mu);
  auto target = events_->posted;
  events_->cv.wait(lock, [&] { return events_->done >= target || events_->stop; });
}

void SessionImpl::global_watcher(zhandle_t* zh, int type, int state, const char* /*path*/,
                                 void* ctx) {
  if (type != ZOO_SESSION_EVENT) return;  // node events go to node_watcher
  static_cast<SessionImpl*>(ctx)->on_session_event(zh, state);
}

void SessionImpl::node_watcher(zhandle_t* zh, int type, int /*state*/, const char* /*path*/,
                               void* ctx) {
  // Session events reach every registered watcher too; the global watcher handles them, and the
  // client keeps (and re-registers) node watches across a reconnect.
  if (type == ZOO_SESSION_EVENT) return;
  auto* self = static_cast<SessionImpl*>(const_cast<void*>(zoo_get_context(zh)));
  self->on_node_event(reinterpret_cast<std::uintptr_t>(ctx));
}

void SessionImpl::on_session_event(zhandle_t* zh, int state) {
  std::lock_guard lock(mu_);
  if (state == ZOO_CONNECTED_STATE) {
    if (const clientid_t* id = zoo_client_id(zh)) client_id_ = *id;
    negotiated_ = std::chrono::milliseconds(zoo_recv_timeout(zh));
    set_state_locked(SessionState::kConnected);
  } else if (state == ZOO_CONNECTING_STATE || state == ZOO_ASSOCIATING_STATE) {
    if (state_ == SessionState::kConnected) set_state_locked(SessionState::kSuspended);
  } else if (state == ZOO_EXPIRED_SESSION_STATE) {
    set_state_locked(SessionState::kExpired);
  } else if (state == ZOO_AUTH_FAILED_STATE) {
    auth_failed_ = true;
    set_state_locked(SessionState::kExpired);
  }
}

void SessionImpl::set_state_locked(SessionState next) {
  if (state_ == SessionState::kExpired || state_ == next) return;
  if (next == SessionState::kSuspended || next == SessionState::kExpired) ++loss_epoch_;
  if (closed_) {
    spdlog::debug("coord: session 0x{:x} closed", client_id_.client_id);
  } else {
    spdlog::info("coord: session 0x{:x} {}", client_id_.client_id, to_string(next));
  }
  state_ = next;
  cv_.notify_all();
  std::vector<std::shared_ptr<std::function<void(SessionState)>>> snapshot;
  for (auto& [id, listener] : listeners_) snapshot.push_back(listener);
  post([snapshot = std::move(snapshot), next] {
    for (auto& listener : snapshot) (*listener)(next);
  });
}

void SessionImpl::on_node_event(std::uintptr_t id) {
  std::shared_ptr<Watch> watch;
  {
    std::lock_guard lock(mu_);
    auto it = watches_.find(id);
    if (it == watches_.end()) return;
    watch = std::move(it->second);
    watches_.erase(it);
    watch->fired = true;
    cv_.notify_all();
  }
  if (watch->on_fire) post(watch->on_fire);
}

bool SessionImpl::wait_connected(Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, deadline, [&] {
    return state_ == SessionState::kConnected || state_ == SessionState::kExpired;
  });
  return state_ == SessionState::kConnected;
}

bool SessionImpl::wait_for(const std::function<bool()>& done, Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  for (;;) {
    if (done()) return true;
    if (state_ == SessionState::kExpired) {
      lock.unlock();
      throw_over();
    }
    if (Clock::now() >= deadline) return false;
    cv_.wait_until(lock, deadline);
  }
}

Clock::time_point SessionImpl::op_deadline() const {
  return Clock::now() + std::max(options_.connect_timeout, options_.session_timeout);
}

std::shared_ptr<Watch> SessionImpl::new_watch(std::function<void()> on_fire) {
  auto watch = std::make_shared<Watch>();
  watch->on_fire = std::move(on_fire);
  return watch;
}

void SessionImpl::throw_over() const {
  bool auth = false;
  bool closed = false;
  {
    std::lock_guard lock(mu_);
    auth = auth_failed_;
    closed = closed_;
  }
  if (auth) throw CoordError(CoordError::Kind::kAuthFailed, "ZAUTHFAILED", "coord: auth failed");
  throw CoordError(CoordError::Kind::kSessionExpired, "ZSESSIONEXPIRED",
                   closed ? "coord: the session was closed" : "coord: the session expired");
}

int SessionImpl::call(const std::function<int(zhandle_t*)>& op, bool retry, int* losses) {
  auto deadline = op_deadline();
  for (;;) {
    zhandle_t* zh = nullptr;
    {
      std::lock_guard lock(mu_);
      if (closed_ || state_ == SessionState::kExpired || zh_ == nullptr) {
        // fallthrough to throw below, outside the lock
      } else {
        zh = zh_;
        ++in_flight_;
      }
    }
    if (zh == nullptr) throw_over();
    int rc = op(zh);
    {
      std::lock_guard lock(mu_);
      --in_flight_;
      cv_.notify_all();
    }
    if (rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT) {
      if (losses != nullptr) ++*losses;
      if (!retry) return rc;
      // The client may report the loss before the session event arrives; give it a moment so
      // this loop waits for the reconnect instead of spinning.
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(50),
                     [&] { return state_ != SessionState::kConnected; });
      }
      if (!wait_connected(deadline)) {
        if (state() == SessionState::kExpired) throw_over();
        return rc;
      }
      if (Clock::now() >= deadline) return rc;
      continue;
    }
    if (rc == ZSESSIONEXPIRED || rc == ZINVALIDSTATE || rc == ZCLOSING || rc == ZAUTHFAILED) {
      if (rc == ZSESSIONEXPIRED) {
        std::lock_guard lock(mu_);
        set_state_locked(SessionState::kExpired);
      }
      throw_over();
    }
    return rc;
  }
}

int SessionImpl::call_watched(const std::shared_ptr<Watch>& watch,
                              const std::function<int(zhandle_t*, watcher_fn, void*)>& op,
                              bool watch_on_nonode) {
  return call(
      [&](zhandle_t* zh) {
        if (!watch) return op(zh, nullptr, nullptr);
        std::uintptr_t id = 0;
        {
          std::lock_guard lock(mu_);
          id = next_watch_id_++;
          watches_[id] = watch;
        }
        int rc = op(zh, &SessionImpl::node_watcher, reinterpret_cast<void*>(id));
        bool armed = rc == ZOK || (rc == ZNONODE && watch_on_nonode);
        if (armed) {
          ++watches_set_;
        } else {
          std::lock_guard lock(mu_);
          watches_.erase(id);
        }
        return rc;
      },
      true);
}

const ACL_vector* SessionImpl::acl() const {
  return options_.digest_auth.empty() ? &ZOO_OPEN_ACL_UNSAFE : &ZOO_CREATOR_ALL_ACL;
}

int SessionImpl::create(const std::string& path, const std::string& data, int mode, Stat* stat) {
  std::array<char, 1024> created{};
  Stat local{};
  int rc = call(
      [&](zhandle_t* zh) {
        return zoo_create2(zh, path.c_str(), data.data(), static_cast<int>(data.size()), acl(),
                           mode, created.data(), static_cast<int>(created.size()),
                           stat != nullptr ? stat : &local);
      },
      true);
  if (rc != ZOK && rc != ZNODEEXISTS && rc != ZNONODE) throw_zk(rc, "coord: create " + path);
  return rc;
}

std::string SessionImpl::create_sequential(const std::string& dir, const std::string& kind,
                                           const std::string& data, bool ephemeral, Stat* stat) {
  const std::string prefix = new_guid() + "-" + kind + "-";
  const int mode = ephemeral ? ZOO_EPHEMERAL_SEQUENTIAL : ZOO_PERSISTENT_SEQUENTIAL;
  auto deadline = op_deadline();
  for (;;) {
    std::array<char, 1024> created{};
    Stat local{};
    int rc = call(
        [&](zhandle_t* zh) {
          std::string path = dir + "/" + prefix;
          return zoo_create2(zh, path.c_str(), data.data(), static_cast<int>(data.size()), acl(),
                             mode, created.data(), static_cast<int>(created.size()),
                             stat != nullptr ? stat : &local);
        },
        false);
    if (rc == ZOK) {
      std::string path(created.data());
      return path.substr(path.rfind('/') + 1);
    }
    if (rc == ZNONODE) {
      ensure_path(dir);
      continue;
    }
    if (rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT) {
      throw_zk(rc, "coord: create in " + dir);
    }
    // The reply was lost: the node may exist. Our GUID finds it.
    if (!wait_connected(deadline)) {
      if (state() == SessionState::kExpired) throw_over();
      throw_zk(rc, "coord: create in " + dir);
    }
    auto names = children(dir, nullptr);
    if (names) {
      for (const auto& name : *names) {
        if (name.rfind(prefix, 0) == 0) {
          if (stat != nullptr && exists(dir + "/" + name, stat, nullptr) != ZOK) break;
          return name;
        }
      }
    }
  }
}

void SessionImpl::ensure_path(const std::string& path) {
  if (path.empty() || path == "/") return;
  if (exists(path, nullptr, nullptr) == ZOK) return;
  for (std::size_t pos = 1;; ++pos) {
    pos = path.find('/', pos);
    std::string prefix = path.substr(0, pos);
    int rc = create(prefix, "", ZOO_PERSISTENT);
    if (rc == ZNONODE) throw_zk(rc, "coord: create " + prefix);
    if (pos == std::string::npos) return;
  }
}

int SessionImpl::remove(const std::string& path, int version, bool* in_doubt) {
  int losses = 0;
  int rc =
      call([&](zhandle_t* zh) { return zoo_delete(zh, path.c_str(), version); }, true, &losses);
  if (rc == ZNONODE && losses > 0) {
    if (in_doubt != nullptr) *in_doubt = true;
    return ZOK;
  }
  if (rc != ZOK && rc != ZNONODE && rc != ZBADVERSION && rc != ZNOTEMPTY) {
    throw_zk(rc, "coord: delete " + path);
  }
  return rc;
}

int SessionImpl::exists(const std::string& path, Stat* stat, const std::shared_ptr<Watch>& watch) {
  Stat local{};
  int rc = call_watched(
      watch,
      [&](zhandle_t* zh, watcher_fn fn, void* ctx) {
        return zoo_wexists(zh, path.c_str(), fn, ctx, stat != nullptr ? stat : &local);
      },
      true);
  if (rc != ZOK && rc != ZNONODE) throw_zk(rc, "coord: exists " + path);
  return rc;
}

int SessionImpl::watch_existing(const std::string& path, const std::shared_ptr<Watch>& watch) {
  int rc = call_watched(
      watch,
      [&](zhandle_t* zh, watcher_fn fn, void* ctx) {
        // Only the watch matters: the client copies what fits of the data and drops the rest.
        char byte = 0;
        int len = 1;
        Stat stat{};
        return zoo_wget(zh, path.c_str(), fn, ctx, &byte, &len, &stat);
      },
      false);
  if (rc != ZOK && rc != ZNONODE) throw_zk(rc, "coord: watch " + path);
  return rc;
}

int SessionImpl::get(const std::string& path, std::string* data, Stat* stat,
                     const std::shared_ptr<Watch>& watch) {
  Stat local{};
  Stat* st = stat != nullptr ? stat : &local;
  std::string buffer(64 * 1024, '\0');
  for (;;) {
    int len = static_cast<int>(buffer.size());
    int rc = call_watched(
        watch,
        [&](zhandle_t* zh, watcher_fn fn, void* ctx) {
          len = static_cast<int>(buffer.size());
          return zoo_wget(zh, path.c_str(), fn, ctx, buffer.data(), &len, st);
        },
        false);
    if (rc == ZNONODE) return rc;
    if (rc != ZOK) throw_zk(rc, "coord: get " + path);
    if (st->dataLength > static_cast<int>(buffer.size())) {
      buffer.resize(static_cast<std::size_t>(st->dataLength));
      continue;
    }
    if (data != nullptr) data->assign(buffer.data(), len < 0 ? 0 : static_cast<std::size_t>(len));
    return rc;
  }
}

std::optional<std::vector<std::string>> SessionImpl::children(const std::string& path,
                                                              const std::shared_ptr<Watch>& watch) {
  std::vector<std::string> names;
  int rc = call_watched(
      watch,
      [&](zhandle_t* zh, watcher_fn fn, void* ctx) {
        String_vector list{};
        int code = zoo_wget_children(zh, path.c_str(), fn, ctx, &list);
        if (code == ZOK) {
          names.clear();
          for (int i = 0; i < list.count; ++i) names.emplace_back(list.data[i]);
          deallocate_String_vector(&list);
        }
        return code;
      },
      false);
  if (rc == ZNONODE) return std::nullopt;
  if (rc != ZOK) throw_zk(rc, "coord: children of " + path);
  return names;
}

int SessionImpl::set_once(const std::string& path, const std::string& data, int version,
                          Stat* stat) {
  Stat local{};
  int rc = call(
      [&](zhandle_t* zh) {
        return zoo_set2(zh, path.c_str(), data.data(), static_cast<int>(data.size()), version,
                        stat != nullptr ? stat : &local);
      },
      false);
  if (rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT) {
    throw CoordError(CoordError::Kind::kConnectionLoss, zk_error_name(rc),
                     "coord: set " + path + ": connection lost, outcome unknown");
  }
  if (rc != ZOK && rc != ZNONODE && rc != ZBADVERSION) throw_zk(rc, "coord: set " + path);
  return rc;
}

int SessionImpl::set(const std::string& path, const std::string& data, Stat* stat) {
  Stat local{};
  int rc = call(
      [&](zhandle_t* zh) {
        return zoo_set2(zh, path.c_str(), data.data(), static_cast<int>(data.size()), -1,
                        stat != nullptr ? stat : &local);
      },
      true);
  if (rc != ZOK && rc != ZNONODE) throw_zk(rc, "coord: set " + path);
  return rc;
}

int SessionImpl::multi(std::vector<zoo_op_t>& ops) {
  std::vector<zoo_op_result_t> results(ops.size());
  int rc = call(
      [&](zhandle_t* zh) {
        return zoo_multi(zh, static_cast<int>(ops.size()), ops.data(), results.data());
      },
      false);
  if (rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT) {
    throw CoordError(CoordError::Kind::kConnectionLoss, zk_error_name(rc),
                     "coord: multi: connection lost, outcome unknown");
  }
  return rc;
}

// ---- Session (public) ----

Session::Session(SessionOptions options)
    : impl_(std::make_shared<SessionImpl>(std::move(options))) {
  impl_->connect();
}

Session::~Session() { impl_->close(); }

SessionState Session::state() const { return impl_->state(); }
std::int64_t Session::session_id() const { return impl_->session_id(); }
std::chrono::milliseconds Session::session_timeout() const { return impl_->negotiated_timeout(); }
std::uint64_t Session::add_state_listener(StateListener listener) {
  return impl_->add_state_listener(std::move(listener));
}
void Session::remove_state_listener(std::uint64_t id) { impl_->remove_state_listener(id); }
bool Session::wait_connected(std::chrono::milliseconds timeout) {
  return impl_->wait_connected(Clock::now() + timeout);
}
void Session::close() { impl_->close(); }
std::string Session::session_password() const { return impl_->session_password(); }
std::uint64_t Session::watches_set() const { return impl_->watches_set(); }

const char* to_string(SessionState state) {
  switch (state) {
    case SessionState::kConnecting:
      return "connecting";
    case SessionState::kConnected:
      return "connected";
    case SessionState::kSuspended:
      return "suspended";
    case SessionState::kExpired:
      return "expired";
  }
  return "?";
}

}  // namespace clupy::coord
