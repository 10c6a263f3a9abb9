// A lazily (re)opened Redis connection plus the retry loop of the operations that are safe to
// repeat. Internal to src/store.
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "store/redis.hpp"

namespace clupy::store {

// Calls f() until it returns or throws something other than a kConnection StoreError; after a
// connection failure calls on_fail() and tries again with backoff, for up to `window`.
template <class F, class OnFail>
auto retry_loop(const std::string& what, std::chrono::milliseconds window, F&& f,
                OnFail&& on_fail) {
  auto start = std::chrono::steady_clock::now();
  auto backoff = std::chrono::milliseconds(25);
  int attempts = 0;
  while (true) {
    ++attempts;
    try {
      return f();
    } catch (const StoreError& e) {
      if (e.code() != StoreError::Code::kConnection) throw;
      on_fail();
      auto spent = std::chrono::steady_clock::now() - start;
      if (spent + backoff > window) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(spent).count();
        throw StoreError(StoreError::Code::kConnection,
                         what + " failed: " + e.what() + " (gave up after " +
                             std::to_string(attempts) + " attempts in " + std::to_string(ms) +
                             " ms)");
      }
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
    }
  }
}

class Session {
 public:
  Session(RedisEndpoint endpoint, const StoreOptions& options)
      : endpoint_(std::move(endpoint)),
        connect_timeout_(options.connect_timeout),
        op_timeout_(options.op_timeout),
        retry_window_(options.retry_window) {}

  const RedisEndpoint& endpoint() const { return endpoint_; }

  // The open connection, connecting first if there is none (or the last one broke).
  RedisConnection& connection() {
    if (!conn_ || conn_->broken() || conn_->pending() != 0)
      conn_ = std::make_unique<RedisConnection>(endpoint_, connect_timeout_, op_timeout_);
    return *conn_;
  }
  void reset() { conn_.reset(); }
  std::unique_ptr<RedisConnection> take() {
    connection();
    return std::move(conn_);
  }
  std::unique_ptr<RedisConnection> fresh() const {
    return std::make_unique<RedisConnection>(endpoint_, connect_timeout_, op_timeout_);
  }

  // Runs f(connection), reconnecting and repeating it while the connection fails, for up to
  // the retry window. Only for operations whose repetition is harmless.
  template <class F>
  auto retry(const std::string& what, F&& f) {
    return retry_loop(
        what, retry_window_, [&] { return f(connection()); }, [&] { reset(); });
  }

 private:
  RedisEndpoint endpoint_;
  std::chrono::milliseconds connect_timeout_, op_timeout_, retry_window_;
  std::unique_ptr<RedisConnection> conn_;
};

}  // namespace clupy::store
