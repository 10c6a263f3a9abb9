// Counter, WatchedNode (the core of Value<T>) and ByteQueue (the core of Queue<T>).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

#include "coord/lease_state.hpp"

namespace clupy::coord {

namespace {

void ensure_parent(SessionImpl& session, const std::string& path) {
  auto slash = path.rfind('/');
  if (slash > 0) session.ensure_path(path.substr(0, slash));
}

std::int64_t parse_counter(const std::string& path, const std::string& text) {
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw CoordError(CoordError::Kind::kCorrupt, "",
                     "coord: counter " + path + " holds '" + text + "', not an integer");
  }
  return value;
}

}  // namespace

// ---- Counter ----

Counter::Counter(Session& session, std::string path)
    : session_(session.impl()), path_(std::move(path)) {
  check_path(path_);
  ensure_parent(*session_, path_);
  session_->create(path_, "0", ZOO_PERSISTENT);  // ZNODEEXISTS: another party made it
}

std::int64_t Counter::get() {
  std::string data;
  if (session_->get(path_, &data, nullptr, nullptr) == ZNONODE) return 0;
  return parse_counter(path_, data);
}

std::int64_t Counter::add(std::int64_t delta) {
  for (;;) {
    std::string data;
    Stat stat{};
    if (session_->get(path_, &data, &stat, nullptr) == ZNONODE) {
      session_->create(path_, "0", ZOO_PERSISTENT);
      continue;
    }
    const std::int64_t next = parse_counter(path_, data) + delta;
    int rc = session_->set_once(path_, std::to_string(next), stat.version, nullptr);
    if (rc == ZOK) return next;
    // ZBADVERSION: someone else updated it first; ZNONODE: someone deleted it. Read again.
  }
}

bool Counter::compare_and_set(std::int64_t expected, std::int64_t desired) {
  for (;;) {
    std::string data;
    Stat stat{};
    if (session_->get(path_, &data, &stat, nullptr) == ZNONODE) {
      if (expected != 0) return false;
      session_->create(path_, "0", ZOO_PERSISTENT);
      continue;
    }
    if (parse_counter(path_, data) != expected) return false;
    int rc = session_->set_once(path_, std::to_string(desired), stat.version, nullptr);
    if (rc == ZOK) return true;
  }
}

// ---- WatchedNode ----

class WatchedNode::Impl : public std::enable_shared_from_this<WatchedNode::Impl> {
 public:
  Impl(std::shared_ptr<SessionImpl> session, std::string path)
      : session_(std::move(session)), path_(std::move(path)) {}

  void watch(std::function<void(const std::optional<std::string>&)> callback) {
    std::weak_ptr<Impl> weak = weak_from_this();
    {
      std::lock_guard lock(mu_);
      callback_ = std::move(callback);
      delivered_.reset();
      if (listener_ == 0) {
        // After a reconnect, read again: the value may have changed while we could not hear.
        listener_ = session_->add_state_listener([weak](SessionState state) {
          if (state != SessionState::kConnected) return;
          if (auto self = weak.lock()) self->refresh();
        });
      }
    }
    session_->post([weak] {
      if (auto self = weak.lock()) self->refresh();
    });
  }

  void stop() {
    std::uint64_t listener = 0;
    {
      std::lock_guard lock(mu_);
      callback_ = nullptr;
      listener = listener_;
      listener_ = 0;
    }
    if (listener != 0) session_->remove_state_listener(listener);
    session_->drain_events();
  }

  const std::shared_ptr<SessionImpl> session_;
  const std::string path_;

 private:
  // On the event thread: read the node, keep one watch armed on it, report a change.
  void refresh() {
    std::function<void(const std::optional<std::string>&)> callback;
    std::shared_ptr<Watch> watch;
    {
      std::lock_guard lock(mu_);
      if (!callback_) return;
      callback = callback_;
      if (!armed_ || armed_->fired.load()) {
        std::weak_ptr<Impl> weak = weak_from_this();
        watch = session_->new_watch([weak] {
          if (auto self = weak.lock()) self->refresh();
        });
      }
    }
    std::optional<std::string> value;
    try {
      std::string data;
      if (session_->get(path_, &data, nullptr, watch) == ZOK) {
        value = std::move(data);
      } else if (watch && session_->exists(path_, nullptr, watch) == ZOK) {
        // Created between the two calls: the watch is armed; read it on the next round.
        session_->post([weak = weak_from_this()] {
          if (auto self = weak.lock()) self->refresh();
        });
      }
    } catch (const CoordError& e) {
      // Connection loss: the reconnect listener reads again. Expiry: nothing more to watch.
      spdlog::warn("coord: watching {}: {}", path_, e.what());
      return;
    }
    {
      std::lock_guard lock(mu_);
      if (watch) armed_ = watch;
      if (delivered_ && *delivered_ == value) return;
      delivered_ = value;
    }
    callback(value);
  }

  std::mutex mu_;
  std::function<void(const std::optional<std::string>&)> callback_;
  std::shared_ptr<Watch> armed_;
  std::optional<std::optional<std::string>> delivered_;
  std::uint64_t listener_ = 0;
};

WatchedNode::WatchedNode(Session& session, std::string path)
    : impl_(std::make_shared<Impl>(session.impl(), (check_path(path), std::move(path)))) {}

WatchedNode::~WatchedNode() { impl_->stop(); }

std::optional<std::string> WatchedNode::get() const {
  std::string data;
  if (impl_->session_->get(impl_->path_, &data, nullptr, nullptr) == ZNONODE) return std::nullopt;
  return data;
}

void WatchedNode::set(const std::string& bytes) {
  auto& session = *impl_->session_;
  for (;;) {
    if (session.set(impl_->path_, bytes, nullptr) == ZOK) return;
    ensure_parent(session, impl_->path_);
    if (session.create(impl_->path_, bytes, ZOO_PERSISTENT) == ZOK) return;
  }
}

bool WatchedNode::set_if_version(const std::string& bytes, int version) {
  auto& session = *impl_->session_;
  if (version == -1) {
    ensure_parent(session, impl_->path_);
    return session.create(impl_->path_, bytes, ZOO_PERSISTENT) == ZOK;
  }
  return session.set_once(impl_->path_, bytes, version, nullptr) == ZOK;
}

void WatchedNode::remove() { impl_->session_->remove(impl_->path_); }

void WatchedNode::watch(std::function<void(const std::optional<std::string>&)> callback) {
  impl_->watch(std::move(callback));
}

// ---- ByteQueue ----

ByteQueue::ByteQueue(Session& session, std::string path)
    : session_(session.impl()), path_(std::move(path)) {
  check_path(path_);
}

void ByteQueue::push(const std::string& bytes) {
  session_->create_sequential(path_, "q", bytes, false);
}

std::optional<std::string> ByteQueue::pop(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + std::max(timeout, std::chrono::milliseconds(0));
  for (;;) {
    auto watch = session_->new_watch();
    auto names = session_->children(path_, watch);
    if (!names) {
      session_->ensure_path(path_);
      continue;
    }
    for (const auto& entry : sorted_queue(*names)) {
      const std::string item = path_ + "/" + entry.name;
      std::string data;
      if (session_->get(item, &data, nullptr, nullptr) == ZNONODE) continue;
      // Whoever deletes the item owns it. A delete whose reply was lost counts as ours
      // (at-least-once: the item may then also reach the consumer that really deleted it).
      if (session_->remove(item) == ZOK) return data;
    }
    if (!session_->wait_for([&] { return watch->fired.load(); }, deadline)) return std::nullopt;
  }
}

std::size_t ByteQueue::size() {
  auto names = session_->children(path_, nullptr);
  return names ? sorted_queue(*names).size() : 0;
}

}  // namespace clupy::coord
