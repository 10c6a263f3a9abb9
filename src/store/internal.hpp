// Pieces shared by the store's translation units: file metadata, SHA-256, name checks and the
// stream buffers behind StoreReader and StoreWriter.
#pragma once

#include <chrono>
#include <clupy/store.hpp>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <streambuf>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/sha256.hpp"
#include "store/layout.hpp"
#include "store/redis.hpp"
#include "store/session.hpp"

namespace clupy::store {

// A file's metadata hash as stored, plus its FileStat.
struct FileMeta {
  FileStat stat;
  std::string blob;
  std::uint64_t chunk_size = 0;
  std::uint64_t chunks = 0;
  // The kind of check value after each chunk's data ("crc32c-x4"); empty: none (a file written
  // before chunks had check values).
  std::string check;
};

// Builds FileMeta from an HGETALL-style array; throws kCorrupt if fields are missing.
FileMeta parse_meta(const std::string& name, Reply::View fields);

std::chrono::system_clock::time_point from_ms(long long ms);
long long to_ms(std::chrono::system_clock::time_point t);

// Throws kInvalidArgument unless `name` is a usable file name.
void validate_name(std::string_view name);
// Throws kInvalidArgument unless the options are usable.
void validate_options(const StoreOptions& options);

// A fresh random blob id (128 bits, hex).
std::string new_blob_id();

// SHA-256 of a byte stream fed in order, computed on a worker thread so hashing overlaps the
// network I/O of the stream that feeds it (hashing runs at about the speed of a local Redis).
// Small inputs are hashed inline and start no thread. The bytes of a submission must stay
// valid and unchanged until wait(ticket) returns for it.
class HashPipeline {
 public:
  HashPipeline() = default;
  ~HashPipeline();
  HashPipeline(const HashPipeline&) = delete;
  HashPipeline& operator=(const HashPipeline&) = delete;

  std::uint64_t submit(std::string_view data);
  // Blocks until the submission `ticket` (and every earlier one) is hashed.
  void wait(std::uint64_t ticket);
  // Waits for everything, then returns the hex digest.
  std::string finish();

 private:
  void run();

  base::Sha256 sha_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::string_view> queue_;
  std::uint64_t submitted_ = 0;
  std::uint64_t hashed_ = 0;
  bool stop_ = false;
  std::thread worker_;
};

// Deletes the chunks of a blob (contiguous from index 0) in pipelined batches until a batch
// finds none. Returns {chunks, bytes} deleted.
struct Deleted {
  std::uint64_t chunks = 0;
  std::uint64_t bytes = 0;
};
Deleted delete_blob_chunks(RedisConnection& conn, const Layout& layout, std::string_view blob);

}  // namespace clupy::store

namespace clupy {

class StoreWriter::Buf : public std::streambuf {
 public:
  // Connects and registers a fresh blob for `name`.
  Buf(const StoreOptions& options, const store::RedisEndpoint& endpoint, std::string name);
  ~Buf() override;

  FileStat commit();
  void abort() noexcept;
  bool committed() const noexcept { return state_ == State::kCommitted; }
  std::uint64_t bytes_written() const noexcept;
  // For put_file, which reads the local file straight into the chunk buffer: the free part of
  // the current buffer (a full buffer is sent first), then how much of it was filled.
  std::span<char> free_space();
  void filled(std::size_t n);

 protected:
  int_type overflow(int_type ch) override;
  std::streamsize xsputn(const char* s, std::streamsize n) override;

 private:
  enum class State { kOpen, kCommitted, kAborted, kFailed };
  void flush_chunk();
  // Hashes, checks and sends one chunk; returns the hasher's ticket for `data`, which must stay
  // unchanged until sha_.wait(ticket).
  std::uint64_t send_chunk(std::string_view data);
  void sniff(std::string_view data);
  void drain(std::size_t keep);
  void check_open();
  template <class F>
  auto guarded(F&& f);

  StoreOptions options_;
  store::Layout layout_;
  std::unique_ptr<store::RedisConnection> conn_;
  std::string name_;
  std::string blob_;
  // A ring of chunk buffers: the user fills one while the others wait for the hasher, so a
  // hasher briefly slowed (by a busy CPU) does not stall the sending at once; memory stays at
  // kChunkBuffers chunks. A chunk is sent from them (or from the caller's memory, for writes of
  // a chunk or more) with writev, without a copy into a command buffer.
  static constexpr int kChunkBuffers = 4;
  std::string bufs_[kChunkBuffers];
  std::uint64_t buf_ticket_[kChunkBuffers] = {};
  int cur_ = 0;
  std::uint64_t chunks_ = 0;
  std::uint64_t size_ = 0;
  store::HashPipeline sha_;
  std::string head_;
  std::string tail_;
  std::chrono::steady_clock::time_point last_heartbeat_;
  State state_ = State::kOpen;
  std::string failure_;
  FileStat stat_;
};

class StoreReader::Buf : public std::streambuf {
 public:
  Buf(const StoreOptions& options, store::Session session, store::FileMeta meta);
  const FileStat& stat() const noexcept { return meta_.stat; }
  // For get_file: the bytes available without a copy (the next chunk is read, and verified, when
  // none are), consumed by this call and valid until the next one; empty at the end of the file,
  // after the end-of-file checks.
  std::string_view take();
  // For get_file with a helper thread writing the file: like take(), but the caller gets the
  // chunk's buffer itself (in `buffer`, whose old contents become the reader's next buffer) and
  // `data`, a view into it. Only when !hashes_file(): the hasher needs the buffers it reads.
  bool take_buffer(store::ByteBuffer& buffer, std::string_view& data);
  // Whether reads check the whole file's SHA-256 (verify_sha256, or a file without chunk checks).
  bool hashes_file() const noexcept { return hash_file_; }

 protected:
  int_type underflow() override;
  std::streamsize showmanyc() override;

 private:
  void request_more();
  // Reads the next chunk into current_; false if it is missing.
  bool next_chunk();
  // Stores the digest of a file written without one (best effort: the caller has it either way).
  void record_sha256(const std::string& sha256);

  StoreOptions options_;
  store::Session session_;
  store::Layout layout_;
  store::FileMeta meta_;
  std::unique_ptr<store::RedisConnection> conn_;
  std::uint64_t next_ = 0;       // index of the next chunk to consume
  std::uint64_t requested_ = 0;  // chunks requested so far on conn_
  std::uint64_t consumed_bytes_ = 0;
  // The chunk being consumed, as read (data and check value).
  store::ByteBuffer current_;
  std::string_view current_data_;  // current_'s data, without its check value
  // Chunks handed to the hasher, kept until it is done with them, and buffers to reuse (so
  // every chunk does not cost a fresh allocation and its page faults).
  std::deque<std::pair<std::uint64_t, store::ByteBuffer>> hashing_;
  std::vector<store::ByteBuffer> spare_;
  store::HashPipeline sha_;
  bool chunk_checks_ = false;  // chunks carry a crc32c-x4 check value after their data
  bool hash_file_ = false;     // check the SHA-256 at the end
  bool verified_ = false;
};

}  // namespace clupy
