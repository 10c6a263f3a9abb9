#include "common/master_locator.hpp"

#include <charconv>
#include <clupy/coord.hpp>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "clupy/errors.hpp"
#include "common/log.hpp"
#include "common/url.hpp"

namespace clupy::common {
namespace {

auto log() { return logger("net"); }

constexpr const char* kDefaultElectionPath = "/clupy/master";
// One session attempt waits at most this long, so a locator being destroyed while ZooKeeper is
// unreachable does not hold its owner for a whole connect_timeout.
constexpr std::chrono::milliseconds kAttemptTimeout{3'000};
constexpr std::chrono::milliseconds kRetryInterval{500};

std::string millis(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

}  // namespace

std::string ZkMasterUrl::to_string() const {
  std::string out = "zk://" + connect;
  if (election_path != kDefaultElectionPath) out += "?election_path=" + election_path;
  return out;
}

bool is_zk_url(const std::string& url) { return url.rfind("zk://", 0) == 0; }

ZkMasterUrl parse_zk_url(const std::string& url) {
  auto fail = [&](const std::string& why) {
    return ConfigError("bad master URL '" + url + "': " + why +
                       " (expected zk://host:port[,host:port...][/chroot]"
                       "[?election_path=/clupy/master])");
  };
  if (!is_zk_url(url)) throw fail("not a zk:// URL");
  std::string rest = url.substr(5);
  ZkMasterUrl out;
  if (const auto query = rest.find('?'); query != std::string::npos) {
    const std::string params = rest.substr(query + 1);
    rest = rest.substr(0, query);
    const std::string key = "election_path=";
    if (params.rfind(key, 0) != 0 || params.find('&') != std::string::npos)
      throw fail("the only query parameter is election_path");
    out.election_path = params.substr(key.size());
    try {
      check_zk_path(out.election_path);
    } catch (const ConfigError& e) {
      throw fail(std::string("election_path: ") + e.what());
    }
    if (out.election_path == "/") throw fail("election_path must not be '/'");
  }
  try {
    out.connect = normalize_zk_connect(rest);
  } catch (const ConfigError& e) {
    throw fail(e.what());
  }
  return out;
}

coord::SessionOptions session_options(const CoordinationSection& section) {
  coord::SessionOptions options;
  options.connect = section.connect;
  options.session_timeout = section.session_timeout;
  options.connect_timeout = section.connect_timeout;
  options.digest_auth = section.digest_auth;
  return options;
}

std::string encode_master_location(const MasterLocation& location) {
  return "url=" + location.url + "\ntoken=" + std::to_string(location.fencing_token) +
         "\ncandidate=" + location.candidate + "\n";
}

std::optional<MasterLocation> decode_master_location(const std::string& bytes) {
  MasterLocation location;
  bool have_url = false;
  std::size_t start = 0;
  while (start < bytes.size()) {
    auto end = bytes.find('\n', start);
    if (end == std::string::npos) end = bytes.size();
    const std::string line = bytes.substr(start, end - start);
    start = end + 1;
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = line.substr(0, eq);
    const std::string value = line.substr(eq + 1);
    if (key == "url") {
      location.url = value;
      have_url = true;
    } else if (key == "token") {
      std::from_chars(value.data(), value.data() + value.size(), location.fencing_token);
    } else if (key == "candidate") {
      location.candidate = value;
    }  // Other keys: written by a newer version; ignored.
  }
  if (!have_url) return std::nullopt;
  try {
    parse_master_url(location.url);
  } catch (const ConfigError&) {
    return std::nullopt;
  }
  return location;
}

class MasterLocator::Impl : public std::enable_shared_from_this<MasterLocator::Impl> {
 public:
  Impl(ZkMasterUrl url, const CoordinationSection& section)
      : url_(std::move(url)), options_(session_options(section)) {
    options_.connect = url_.connect;
    options_.connect_timeout = std::min(options_.connect_timeout, kAttemptTimeout);
    leader_path_ = url_.election_path + "/leader";
  }

  void start() {
    keeper_ = std::thread([self = shared_from_this()] { self->keep(); });
  }

  void shutdown() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (keeper_.joinable()) keeper_.join();
    {
      std::lock_guard lock(mu_);
      listeners_.clear();
    }
    // Not under deliver_mu_: resetting the node waits for its callback, which takes that lock.
    node_.reset();
    session_.reset();
  }

  MasterLocation resolve(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return current_.has_value(); });
    if (current_) return *current_;
    if (!connected_once_)
      throw ConnectionError("cannot reach ZooKeeper at " + url_.connect + " to find the master (" +
                            url_.to_string() + ") within " + millis(timeout) +
                            (last_error_.empty() ? "" : ": " + last_error_));
    throw ConnectionError("no master is elected at " + url_.to_string() +
                          " (nothing published at " + leader_path_ + " within " + millis(timeout) +
                          ")");
  }

  std::optional<MasterLocation> current() const {
    std::lock_guard lock(mu_);
    return current_;
  }

  std::uint64_t subscribe(Listener listener) {
    std::lock_guard lock(mu_);
    listeners_[next_listener_] = std::make_shared<Listener>(std::move(listener));
    return next_listener_++;
  }

  void unsubscribe(std::uint64_t id) {
    // Taking the delivery lock waits for a listener call in progress (recursive: a listener may
    // unsubscribe itself).
    std::lock_guard deliver(deliver_mu_);
    std::lock_guard lock(mu_);
    listeners_.erase(id);
  }

  const ZkMasterUrl url_;

 private:
  // The keeper thread: makes a session and a watch on the leader node, and makes them again after
  // the session expires.
  void keep() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      if (!need_session_) {
        cv_.wait(lock, [&] { return stopping_ || need_session_; });
        continue;
      }
      lock.unlock();
      const bool ok = connect();
      lock.lock();
      if (ok) {
        need_session_ = false;
      } else {
        cv_.wait_for(lock, kRetryInterval, [&] { return stopping_; });
      }
    }
  }

  // Replaces the session; false (with last_error_ set) when ZooKeeper cannot be reached.
  bool connect() {
    // The old session's node and session go first (their callbacks stop before they are gone).
    node_.reset();
    session_.reset();
    std::unique_ptr<coord::Session> session;
    try {
      session = std::make_unique<coord::Session>(options_);
    } catch (const CoordError& e) {
      std::lock_guard lock(mu_);
      if (last_error_ != e.what()) log()->warn("master locator: {}", e.what());
      last_error_ = e.what();
      return false;
    }
    std::weak_ptr<Impl> weak = weak_from_this();
    session->add_state_listener([weak](coord::SessionState state) {
      if (state != coord::SessionState::kExpired) return;
      if (auto self = weak.lock()) {
        std::lock_guard lock(self->mu_);
        self->need_session_ = true;
        self->cv_.notify_all();
      }
    });
    auto node = std::make_unique<coord::WatchedNode>(*session, leader_path_);
    node->watch([weak](const std::optional<std::string>& bytes) {
      if (auto self = weak.lock()) self->on_leader_node(bytes);
    });
    {
      std::lock_guard lock(mu_);
      connected_once_ = true;
      last_error_.clear();
    }
    session_ = std::move(session);
    node_ = std::move(node);
    return true;
  }

  // On the session's event thread: the leader node's contents, after every change.
  void on_leader_node(const std::optional<std::string>& bytes) {
    std::optional<MasterLocation> location;
    if (bytes) {
      location = decode_master_location(*bytes);
      if (!location) log()->warn("master locator: {} holds no master URL; ignored", leader_path_);
    }
    std::lock_guard deliver(deliver_mu_);
    std::vector<std::shared_ptr<Listener>> listeners;
    {
      std::lock_guard lock(mu_);
      if (location == current_) return;
      current_ = location;
      for (const auto& [id, listener] : listeners_) listeners.push_back(listener);
    }
    cv_.notify_all();
    if (location) {
      log()->info("master locator: the master is {} (token {}, {})", location->url,
                  location->fencing_token, location->candidate);
    } else {
      log()->info("master locator: no master published at {}", url_.to_string());
    }
    for (const auto& listener : listeners) (*listener)(location);
  }

  coord::SessionOptions options_;
  std::string leader_path_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool need_session_ = true;
  bool connected_once_ = false;
  std::string last_error_;
  std::optional<MasterLocation> current_;
  std::map<std::uint64_t, std::shared_ptr<Listener>> listeners_;
  std::uint64_t next_listener_ = 1;
  std::recursive_mutex deliver_mu_;  // held while listeners run

  std::thread keeper_;
  // Only the keeper thread (and shutdown(), after joining it) touches these.
  std::unique_ptr<coord::Session> session_;
  std::unique_ptr<coord::WatchedNode> node_;
};

MasterLocator::MasterLocator(const std::string& zk_url, const CoordinationSection& section)
    : impl_(std::make_shared<Impl>(parse_zk_url(zk_url), section)) {
  impl_->start();
}

MasterLocator::~MasterLocator() { impl_->shutdown(); }

MasterLocation MasterLocator::resolve(std::chrono::milliseconds timeout) {
  return impl_->resolve(timeout);
}

std::optional<MasterLocation> MasterLocator::current() const { return impl_->current(); }

std::uint64_t MasterLocator::subscribe(Listener listener) {
  return impl_->subscribe(std::move(listener));
}

void MasterLocator::unsubscribe(std::uint64_t id) { impl_->unsubscribe(id); }

const ZkMasterUrl& MasterLocator::url() const { return impl_->url_; }

}  // namespace clupy::common
