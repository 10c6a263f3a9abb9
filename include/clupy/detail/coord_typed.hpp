// Value<T> and Queue<T>: typed (msgpack) views of WatchedNode and ByteQueue. Included by
// clupy/coord.hpp; T must be msgpack-serializable (std types, MSGPACK_DEFINE aggregates).
#pragma once

#include <functional>
#include <msgpack.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

namespace clupy::coord {

namespace detail {

template <typename T>
std::string encode(const T& value) {
  std::stringstream out;
  msgpack::pack(out, value);
  return out.str();
}

// Throws CoordError(kCorrupt) when the bytes are not a T.
template <typename T>
T decode(const std::string& bytes, const std::string& path) {
  try {
    msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size());
    return handle.get().as<T>();
  } catch (const msgpack::type_error&) {
    throw CoordError(CoordError::Kind::kCorrupt, "", "coord: " + path + " holds no such type");
  } catch (const msgpack::unpack_error& e) {
    throw CoordError(CoordError::Kind::kCorrupt, "", "coord: " + path + ": " + e.what());
  }
}

}  // namespace detail

// A msgpack value at `path`, shared by every process, with change callbacks.
// Thread-safe; callbacks run on the Session's event thread.
template <typename T>
class Value {
 public:
  Value(Session& session, std::string path) : path_(path), node_(session, std::move(path)) {}
  std::optional<T> get() const {
    auto bytes = node_.get();
    if (!bytes) return std::nullopt;
    return detail::decode<T>(*bytes, path_);
  }
  void set(const T& value) { node_.set(detail::encode(value)); }
  void remove() { node_.remove(); }
  // Calls `callback(value or nullopt)` now and after every change (see WatchedNode::watch). A
  // value that cannot be decoded as T is reported as nullopt.
  void on_change(std::function<void(const std::optional<T>&)> callback) {
    node_.watch([cb = std::move(callback), path = path_](const std::optional<std::string>& bytes) {
      std::optional<T> value;
      if (bytes) {
        try {
          value = detail::decode<T>(*bytes, path);
        } catch (const CoordError&) {
        }
      }
      cb(value);
    });
  }

 private:
  std::string path_;
  WatchedNode node_;
};

// A distributed FIFO of msgpack values under `path`. Thread-safe.
template <typename T>
class Queue {
 public:
  Queue(Session& session, std::string path) : path_(path), queue_(session, std::move(path)) {}
  void push(const T& value) { queue_.push(detail::encode(value)); }
  std::optional<T> pop(std::chrono::milliseconds timeout) {
    auto bytes = queue_.pop(timeout);
    if (!bytes) return std::nullopt;
    return detail::decode<T>(*bytes, path_);
  }
  std::size_t size() { return queue_.size(); }

 private:
  std::string path_;
  ByteQueue queue_;
};

}  // namespace clupy::coord
