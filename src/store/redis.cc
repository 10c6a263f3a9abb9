#include "store/redis.hpp"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

namespace clupy::store {
namespace {

[[noreturn]] void bad_url(std::string_view url, const std::string& why) {
  throw StoreError(StoreError::Code::kInvalidArgument,
                   "invalid store URL '" + std::string(url) + "': " + why);
}

int parse_int(std::string_view url, std::string_view text, const char* what, int lo, int hi) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < lo || value > hi)
    bad_url(url, std::string(what) + " '" + std::string(text) + "' is not a number in [" +
                     std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return value;
}

std::string percent_decode(std::string_view url, std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) bad_url(url, "truncated %-escape");
    int v = 0;
    auto [end, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    if (ec != std::errc() || end != s.data() + i + 3) bad_url(url, "bad %-escape");
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

// hiredis writes with write(2), so a peer that died would raise SIGPIPE and kill the process.
// A library must not change the process's signal dispositions, so SIGPIPE is blocked in this
// thread while hiredis writes, and one it raised is consumed before unblocking.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        timespec zero{};
        sigtimedwait(&pipe_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_, old_;
  bool was_pending_ = false;
};

}  // namespace

std::string RedisEndpoint::describe() const {
  std::string s = unix_socket ? "unix:" + path : "redis://" + host + ":" + std::to_string(port);
  if (db != 0) s += (unix_socket ? "?db=" : "/") + std::to_string(db);
  return s;
}

RedisEndpoint parse_redis_url(std::string_view url) {
  RedisEndpoint ep;
  constexpr std::string_view kRedis = "redis://", kUnix = "unix://";
  if (url.starts_with("rediss://"))
    bad_url(url,
            "TLS (rediss://) is not supported: this build's hiredis (0.14) has no TLS; "
            "use a unix socket or an stunnel/ssh tunnel to 127.0.0.1");
  if (url.starts_with(kUnix)) {
    ep.unix_socket = true;
    std::string_view rest = url.substr(kUnix.size());
    std::string_view query;
    if (auto q = rest.find('?'); q != std::string_view::npos) {
      query = rest.substr(q + 1);
      rest = rest.substr(0, q);
    }
    if (rest.empty() || rest.front() != '/')
      bad_url(url, "a unix socket URL needs an absolute path: unix:///path/to/redis.sock");
    ep.path = percent_decode(url, rest);
    while (!query.empty()) {
      auto amp = query.find('&');
      std::string_view kv = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
      auto eq = kv.find('=');
      if (eq == std::string_view::npos) bad_url(url, "query item without '='");
      std::string_view k = kv.substr(0, eq), v = kv.substr(eq + 1);
      if (k == "db") {
        ep.db = parse_int(url, v, "db", 0, 1 << 20);
      } else if (k == "password") {
        ep.password = percent_decode(url, v);
      } else if (k == "user") {
        ep.user = percent_decode(url, v);
      } else {
        bad_url(url, "unknown query parameter '" + std::string(k) + "' (db, user, password)");
      }
    }
    return ep;
  }
  if (!url.starts_with(kRedis))
    bad_url(url, "expected redis://host:port/db or unix:///path/to.sock");
  std::string_view rest = url.substr(kRedis.size());
  std::string_view path;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      // redis://password@host is common enough to accept (redis-cli -u does).
      ep.password = percent_decode(url, userinfo);
    } else {
      ep.user = percent_decode(url, userinfo.substr(0, colon));
      ep.password = percent_decode(url, userinfo.substr(colon + 1));
    }
  }
  std::string_view host = rest, port;
  if (rest.starts_with('[')) {
    auto close = rest.find(']');
    if (close == std::string_view::npos) bad_url(url, "unterminated [IPv6] host");
    host = rest.substr(1, close - 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') bad_url(url, "junk after [IPv6] host");
      port = after.substr(1);
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) bad_url(url, "no host");
  ep.host = std::string(host);
  if (!port.empty()) ep.port = parse_int(url, port, "port", 1, 65535);
  if (!path.empty()) ep.db = parse_int(url, path, "db", 0, 1 << 20);
  return ep;
}

Reply::Reply(redisReply* r) : r_(r) {}
Reply::Reply(Reply&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
Reply& Reply::operator=(Reply&& o) noexcept {
  if (this != &o) {
    if (r_ != nullptr) freeReplyObject(r_);
    r_ = std::exchange(o.r_, nullptr);
  }
  return *this;
}
Reply::~Reply() {
  if (r_ != nullptr) freeReplyObject(r_);
}
bool Reply::is_nil() const { return view().is_nil(); }
bool Reply::is_string() const {
  return r_ != nullptr && (r_->type == REDIS_REPLY_STRING || r_->type == REDIS_REPLY_STATUS);
}
bool Reply::is_integer() const { return view().is_integer(); }
bool Reply::is_array() const { return r_ != nullptr && r_->type == REDIS_REPLY_ARRAY; }
std::string_view Reply::str() const { return view().str(); }
long long Reply::integer() const { return view().integer(); }
std::size_t Reply::size() const { return view().size(); }

bool Reply::View::is_nil() const { return r_ == nullptr || r_->type == REDIS_REPLY_NIL; }
bool Reply::View::is_integer() const { return r_ != nullptr && r_->type == REDIS_REPLY_INTEGER; }
std::string_view Reply::View::str() const {
  if (r_ == nullptr || r_->str == nullptr) return {};
  return {r_->str, r_->len};
}
long long Reply::View::integer() const { return is_integer() ? r_->integer : 0; }
std::size_t Reply::View::size() const {
  return r_ != nullptr && r_->type == REDIS_REPLY_ARRAY ? r_->elements : 0;
}
Reply::View Reply::View::operator[](std::size_t i) const {
  return View(i < size() ? r_->element[i] : nullptr);
}

void throw_error_reply(const RedisEndpoint& endpoint, std::string_view text) {
  struct Mapping {
    std::string_view tag;
    StoreError::Code code;
  };
  static constexpr Mapping kMappings[] = {
      {"CLUPY_NOT_FOUND ", StoreError::Code::kNotFound},
      {"CLUPY_CONFLICT ", StoreError::Code::kConflict},
      {"CLUPY_INVALID ", StoreError::Code::kInvalidArgument},
  };
  // A script error reaches us wrapped ("ERR user_script:1: CLUPY_... script: ..." in Redis 7,
  // or the bare text for redis.error_reply), so look for the tag anywhere.
  for (const auto& m : kMappings) {
    if (auto pos = text.find(m.tag); pos != std::string_view::npos) {
      std::string_view msg = text.substr(pos + m.tag.size());
      throw StoreError(m.code, std::string(msg));
    }
  }
  throw StoreError(StoreError::Code::kServer,
                   "redis at " + endpoint.describe() + " answered: " + std::string(text));
}

RedisConnection::RedisConnection(const RedisEndpoint& endpoint,
                                 std::chrono::milliseconds connect_timeout,
                                 std::chrono::milliseconds op_timeout)
    : endpoint_(endpoint) {
  timeval tv = to_timeval(connect_timeout);
  ctx_ = endpoint.unix_socket ? redisConnectUnixWithTimeout(endpoint.path.c_str(), tv)
                              : redisConnectWithTimeout(endpoint.host.c_str(), endpoint.port, tv);
  if (ctx_ == nullptr)
    throw StoreError(StoreError::Code::kConnection,
                     "cannot connect to redis at " + endpoint.describe() + ": out of memory");
  if (ctx_->err != 0) {
    std::string why = ctx_->errstr;
    redisFree(ctx_);
    ctx_ = nullptr;
    throw StoreError(StoreError::Code::kConnection,
                     "cannot connect to redis at " + endpoint.describe() + ": " + why);
  }
  if (redisSetTimeout(ctx_, to_timeval(op_timeout)) != REDIS_OK) {
    redisFree(ctx_);
    ctx_ = nullptr;
    throw StoreError(StoreError::Code::kConnection,
                     "cannot set socket timeouts for redis at " + endpoint.describe());
  }
  try {
    if (!endpoint.password.empty()) {
      if (endpoint.user.empty())
        call({"AUTH", endpoint.password});
      else
        call({"AUTH", endpoint.user, endpoint.password});
    }
    if (endpoint.db != 0) call({"SELECT", std::to_string(endpoint.db)});
  } catch (...) {
    redisFree(ctx_);
    ctx_ = nullptr;
    throw;
  }
}

RedisConnection::~RedisConnection() {
  if (ctx_ != nullptr) redisFree(ctx_);
}

void RedisConnection::fail_io(const char* during) {
  broken_ = true;
  std::string why = ctx_->errstr[0] != '\0' ? ctx_->errstr : "connection closed";
  if (ctx_->err == REDIS_ERR_EOF) why = "the server closed the connection";
  throw StoreError(
      StoreError::Code::kConnection,
      "lost the connection to redis at " + endpoint_.describe() + " while " + during + ": " + why);
}

void RedisConnection::append_argv(const std::string_view* args, std::size_t n) {
  if (broken_) fail_io("sending");
  constexpr std::size_t kSmall = 16;
  const char* argv_small[kSmall];
  std::size_t len_small[kSmall];
  std::vector<const char*> argv_big;
  std::vector<std::size_t> len_big;
  const char** argv = argv_small;
  std::size_t* lens = len_small;
  if (n > kSmall) {
    argv_big.resize(n);
    len_big.resize(n);
    argv = argv_big.data();
    lens = len_big.data();
  }
  for (std::size_t i = 0; i < n; ++i) {
    argv[i] = args[i].data();
    lens[i] = args[i].size();
  }
  if (redisAppendCommandArgv(ctx_, static_cast<int>(n), argv, lens) != REDIS_OK)
    fail_io("queueing a command");
  ++pending_;
}

void RedisConnection::append(std::initializer_list<std::string_view> args) {
  append_argv(args.begin(), args.size());
}

void RedisConnection::append(const std::vector<std::string_view>& args) {
  append_argv(args.data(), args.size());
}

void RedisConnection::flush_output() {
  SigpipeGuard guard;
  int done = 0;
  while (done == 0)
    if (redisBufferWrite(ctx_, &done) != REDIS_OK) fail_io("sending");
}

void RedisConnection::send_formatted(std::span<const std::string_view> pieces) {
  if (broken_) fail_io("sending");
  constexpr std::size_t kMaxPieces = 8;
  if (pieces.size() > kMaxPieces)
    throw StoreError(StoreError::Code::kInvalidArgument, "send_formatted: too many pieces");
  flush_output();  // what hiredis has queued goes first
  SigpipeGuard guard;
  iovec iov[kMaxPieces];
  std::size_t count = 0;
  for (std::string_view piece : pieces)
    if (!piece.empty()) iov[count++] = {const_cast<char*>(piece.data()), piece.size()};
  iovec* next = iov;
  while (count > 0) {
    ssize_t n = ::writev(ctx_->fd, next, static_cast<int>(count));
    if (n < 0) {
      if (errno == EINTR) continue;
      broken_ = true;
      // The socket has a send timeout (op_timeout): EAGAIN means it expired.
      std::string why =
          errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : std::strerror(errno);
      throw StoreError(
          StoreError::Code::kConnection,
          "lost the connection to redis at " + endpoint_.describe() + " while sending: " + why);
    }
    auto left = static_cast<std::size_t>(n);
    while (count > 0 && left >= next->iov_len) {
      left -= next->iov_len;
      ++next;
      --count;
    }
    if (count > 0) {
      next->iov_base = static_cast<char*>(next->iov_base) + left;
      next->iov_len -= left;
    }
  }
  ++pending_;
}

void RedisConnection::fail_read(const std::string& why) {
  broken_ = true;
  throw StoreError(StoreError::Code::kConnection, "lost the connection to redis at " +
                                                      endpoint_.describe() +
                                                      " while waiting for a reply: " + why);
}

std::size_t RedisConnection::read_some(char* to, std::size_t n) {
  while (true) {
    ssize_t got = ::read(ctx_->fd, to, n);
    if (got > 0) return static_cast<std::size_t>(got);
    if (got == 0) fail_read("the server closed the connection");
    if (errno == EINTR) continue;
    // The socket has a receive timeout (op_timeout): EAGAIN means it expired.
    fail_read(errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : std::strerror(errno));
  }
}

// read_bulk reads reply headers in reads of this size (payloads go straight to their buffer).
constexpr std::size_t kInputBuffer = 64 * 1024;

std::string_view RedisConnection::read_line() {
  std::size_t scanned = in_pos_;
  while (true) {
    const char* begin = in_.data() + in_pos_;
    const char* from = in_.data() + scanned;
    const char* end = in_.data() + in_end_;
    if (const void* lf = std::memchr(from, '\n', static_cast<std::size_t>(end - from))) {
      const char* line_end = static_cast<const char*>(lf);
      in_pos_ = static_cast<std::size_t>(line_end + 1 - in_.data());
      if (line_end == begin || line_end[-1] != '\r') fail_read("malformed reply line");
      return {begin, static_cast<std::size_t>(line_end - 1 - begin)};
    }
    // Keep the partial line at the front of the buffer and read more after it.
    std::size_t partial = in_end_ - in_pos_;
    if (partial >= kInputBuffer) fail_read("reply line too long");
    if (in_.size() < kInputBuffer) {
      ByteBuffer bigger;
      bigger.resize(kInputBuffer);
      std::memcpy(bigger.data(), in_.data() + in_pos_, partial);
      in_ = std::move(bigger);
    } else {
      std::memmove(in_.data(), in_.data() + in_pos_, partial);
    }
    in_pos_ = 0;
    in_end_ = partial;
    scanned = partial;
    in_end_ += read_some(in_.data() + in_end_, in_.size() - in_end_);
  }
}

bool RedisConnection::read_bulk(ByteBuffer& out) {
  if (broken_) fail_io("reading");
  if (!reads_taken_over_) {
    // Bytes hiredis already read (none after whole replies, but be exact) come first.
    redisReader* r = ctx_->reader;
    std::size_t left = r->len - r->pos;
    in_.resize(std::max(left, kInputBuffer));
    std::memcpy(in_.data(), r->buf + r->pos, left);
    in_pos_ = 0;
    in_end_ = left;
    r->pos = r->len;
    reads_taken_over_ = true;
  }
  flush_output();
  std::string_view line = read_line();
  if (line.empty()) fail_read("empty reply line");
  if (line.front() == '-') {
    --pending_;
    throw_error_reply(endpoint_, line.substr(1));
  }
  long long length = 0;
  auto [end, ec] = std::from_chars(line.data() + 1, line.data() + line.size(), length);
  if (line.front() != '$' || ec != std::errc() || end != line.data() + line.size() || length < -1)
    fail_read("expected a bulk string, got '" + std::string(line.substr(0, 40)) + "'");
  if (length == -1) {
    --pending_;
    return false;
  }
  auto n = static_cast<std::size_t>(length);
  out.resize(n);
  std::size_t have = std::min(n, in_end_ - in_pos_);
  std::memcpy(out.data(), in_.data() + in_pos_, have);
  in_pos_ += have;
  // The rest of the payload goes straight from the socket into `out`.
  while (have < n) have += read_some(out.data() + have, n - have);
  while (in_end_ - in_pos_ < 2) {
    if (in_pos_ > 0) {
      std::memmove(in_.data(), in_.data() + in_pos_, in_end_ - in_pos_);
      in_end_ -= in_pos_;
      in_pos_ = 0;
    }
    in_end_ += read_some(in_.data() + in_end_, in_.size() - in_end_);
  }
  if (in_.data()[in_pos_] != '\r' || in_.data()[in_pos_ + 1] != '\n')
    fail_read("bulk string not followed by CRLF");
  in_pos_ += 2;
  --pending_;
  return true;
}

Reply RedisConnection::read_reply() {
  if (broken_) fail_io("reading");
  if (reads_taken_over_)
    throw StoreError(StoreError::Code::kInvalidArgument,
                     "read_reply on a connection whose replies are read by read_bulk");
  void* raw = nullptr;
  int rc = REDIS_OK;
  {
    SigpipeGuard guard;
    rc = redisGetReply(ctx_, &raw);
  }
  if (rc != REDIS_OK || raw == nullptr) fail_io("waiting for a reply");
  --pending_;
  Reply reply(static_cast<redisReply*>(raw));
  if (static_cast<redisReply*>(raw)->type == REDIS_REPLY_ERROR)
    throw_error_reply(endpoint_, reply.str());
  return reply;
}

Reply RedisConnection::call(std::initializer_list<std::string_view> args) {
  append(args);
  return read_reply();
}

Reply RedisConnection::call(const std::vector<std::string_view>& args) {
  append(args);
  return read_reply();
}

}  // namespace clupy::store
