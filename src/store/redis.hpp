// A small synchronous Redis client over hiredis: URL parsing, one connection, pipelining and the
// error mapping to clupy::StoreError. Internal to src/store; hiredis types stay in redis.cc.
#pragma once

#include <chrono>
#include <clupy/store.hpp>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct redisContext;
struct redisReply;

namespace clupy::store {

struct RedisEndpoint {
  bool unix_socket = false;
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string path;  // unix socket path
  int db = 0;
  std::string user;
  std::string password;
  // For messages: never shows the password.
  std::string describe() const;
};

// Parses redis://[[user]:password@]host[:port][/db] and unix:///path[?db=N&password=P&user=U].
// Throws StoreError kInvalidArgument naming what is wrong.
RedisEndpoint parse_redis_url(std::string_view url);

// An owned hiredis reply, read through accessors so callers need no hiredis header.
class Reply {
 public:
  Reply() = default;
  explicit Reply(redisReply* r);
  Reply(Reply&&) noexcept;
  Reply& operator=(Reply&&) noexcept;
  ~Reply();

  bool is_nil() const;
  bool is_string() const;  // bulk or status string
  bool is_integer() const;
  bool is_array() const;
  std::string_view str() const;  // bulk, status or error text
  long long integer() const;
  std::size_t size() const;  // array elements
  // Borrowed view of element i of an array (valid while this Reply lives).
  class View {
   public:
    explicit View(const redisReply* r) : r_(r) {}
    bool is_nil() const;
    bool is_integer() const;
    std::string_view str() const;
    long long integer() const;
    std::size_t size() const;
    View operator[](std::size_t i) const;

   private:
    const redisReply* r_;
  };
  View view() const { return View(r_); }
  View operator[](std::size_t i) const { return view()[i]; }

 private:
  redisReply* r_ = nullptr;
};

// A growable byte buffer that, unlike std::string, is not zero-filled when it grows: chunk
// buffers are overwritten whole, so filling them first would be a wasted pass over memory.
class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&& other) noexcept
      : data_(std::move(other.data_)),
        size_(std::exchange(other.size_, 0)),
        capacity_(std::exchange(other.capacity_, 0)) {}
  ByteBuffer& operator=(ByteBuffer&& other) noexcept {
    data_ = std::move(other.data_);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    return *this;
  }
  // Makes size() n; the contents are unspecified afterwards when n exceeds the capacity.
  void resize(std::size_t n) {
    if (n > capacity_) {
      data_ = std::make_unique_for_overwrite<char[]>(n);
      capacity_ = n;
    }
    size_ = n;
  }
  char* data() { return data_.get(); }
  const char* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  std::string_view view() const { return {data_.get(), size_}; }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

class RedisConnection {
 public:
  // Connects, authenticates and selects the database; throws StoreError kConnection/kServer.
  RedisConnection(const RedisEndpoint& endpoint, std::chrono::milliseconds connect_timeout,
                  std::chrono::milliseconds op_timeout);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Sends one command and waits for its reply. Error replies throw (see read_reply).
  Reply call(std::initializer_list<std::string_view> args);
  Reply call(const std::vector<std::string_view>& args);
  // Queues a command without waiting (pipelining); its reply comes from read_reply in order.
  void append(std::initializer_list<std::string_view> args);
  void append(const std::vector<std::string_view>& args);
  // Sends a command already encoded in RESP, given in pieces, straight from the caller's memory
  // with writev: no copy into hiredis's output buffer. Commands queued before it are flushed
  // first, so replies stay in order. Returns when every byte is in the socket; its reply comes
  // from read_reply like that of an appended command. Throws kConnection like read_reply.
  void send_formatted(std::span<const std::string_view> pieces);
  // Flushes queued commands and reads the next reply. Throws kConnection on I/O failure (the
  // connection is then broken for good), kServer (or the code a script's error names) for an
  // error reply.
  Reply read_reply();
  // Reads the next reply, which must be a bulk string (true: in `out`, resized to fit) or nil
  // (false), without hiredis's reader: the payload goes from the socket straight into `out`, in
  // as few read(2) calls as the socket allows, instead of 16 KiB reads copied twice. Error
  // replies throw like read_reply. Once used, a connection's replies must all be read with it.
  bool read_bulk(ByteBuffer& out);
  std::size_t pending() const noexcept { return pending_; }
  bool broken() const noexcept { return broken_; }
  const RedisEndpoint& endpoint() const noexcept { return endpoint_; }

 private:
  [[noreturn]] void fail_io(const char* during);
  [[noreturn]] void fail_read(const std::string& why);
  void append_argv(const std::string_view* args, std::size_t n);
  void flush_output();
  // Reads from the socket into `to` (at most n bytes, at least 1); throws on EOF or error.
  std::size_t read_some(char* to, std::size_t n);
  // The next line of input (without CRLF), from in_, reading more as needed.
  std::string_view read_line();

  RedisEndpoint endpoint_;
  redisContext* ctx_ = nullptr;
  std::size_t pending_ = 0;
  bool broken_ = false;
  // read_bulk's input: bytes read past the last reply, in in_[in_pos_, in_end_).
  bool reads_taken_over_ = false;
  ByteBuffer in_;
  std::size_t in_pos_ = 0;
  std::size_t in_end_ = 0;
};

// Maps an error reply text to a StoreError. Scripts prefix their errors with "CLUPY_<CODE> ".
[[noreturn]] void throw_error_reply(const RedisEndpoint& endpoint, std::string_view text);

}  // namespace clupy::store
