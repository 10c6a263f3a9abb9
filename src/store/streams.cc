// StoreWriter and StoreReader: chunked, pipelined streams over one blob.
#include <algorithm>
#include <clupy/store.hpp>
#include <cstring>
#include <string>

#include "store/chunk_check.hpp"
#include "store/content_type.hpp"
#include "store/internal.hpp"

namespace clupy {

using store::kSniffHeadBytes;
using store::kSniffTailBytes;

namespace {
// A writer refreshes its lease at most this often; the janitor's orphan grace must be far longer.
constexpr auto kHeartbeatEvery = std::chrono::seconds(1);
}  // namespace

// ---------------------------------------------------------------------------------------------
// Writer

StoreWriter::Buf::Buf(const StoreOptions& options, const store::RedisEndpoint& endpoint,
                      std::string name)
    : options_(options),
      layout_(options.key_prefix),
      name_(std::move(name)),
      blob_(store::new_blob_id()) {
  conn_ = std::make_unique<store::RedisConnection>(endpoint, options.connect_timeout,
                                                   options.op_timeout);
  conn_->call({"EVAL", store::kScriptBeginWrite, "1", layout_.writing(), blob_});
  last_heartbeat_ = std::chrono::steady_clock::now();
  bufs_[0].resize(options.chunk_size);
  setp(bufs_[0].data(), bufs_[0].data() + options.chunk_size);
}

StoreWriter::Buf::~Buf() { abort(); }

std::uint64_t StoreWriter::Buf::bytes_written() const noexcept {
  return size_ + static_cast<std::uint64_t>(pptr() - pbase());
}

void StoreWriter::Buf::check_open() {
  if (state_ == State::kOpen) return;
  if (state_ == State::kFailed)
    throw StoreError(StoreError::Code::kConflict,
                     "writer of '" + name_ + "' failed earlier: " + failure_);
  throw StoreError(StoreError::Code::kInvalidArgument,
                   "writer of '" + name_ + "' is already " +
                       (state_ == State::kCommitted ? "committed" : "aborted"));
}

template <class F>
auto StoreWriter::Buf::guarded(F&& f) {
  check_open();
  try {
    return f();
  } catch (const StoreError& e) {
    state_ = State::kFailed;
    failure_ = e.what();
    throw;
  }
}

void StoreWriter::Buf::drain(std::size_t keep) {
  while (conn_->pending() > keep) {
    store::Reply r = conn_->read_reply();
    // Chunk SETs answer +OK; heartbeats answer 1, or 0 once the janitor claimed the blob.
    if (r.is_integer() && r.integer() == 0)
      throw StoreError(StoreError::Code::kConflict,
                       "the write lease of '" + name_ +
                           "' was lost: the writer stalled longer than the janitor's orphan "
                           "grace; nothing was published");
  }
}

void StoreWriter::Buf::sniff(std::string_view data) {
  std::size_t n = data.size();
  if (head_.size() < kSniffHeadBytes)
    head_.append(data.substr(0, std::min(n, kSniffHeadBytes - head_.size())));
  if (n >= kSniffTailBytes) {
    tail_.assign(data.substr(n - kSniffTailBytes));
  } else {
    tail_.append(data);
    if (tail_.size() > kSniffTailBytes) tail_.erase(0, tail_.size() - kSniffTailBytes);
  }
}

std::uint64_t StoreWriter::Buf::send_chunk(std::string_view data) {
  // The hasher starts on this chunk while it is checked and sent.
  std::uint64_t ticket = options_.sha256_on_write ? sha_.submit(data) : 0;
  sniff(data);
  store::ChunkCheck check = store::chunk_check(chunks_, data);
  char trailer[store::kChunkCheckBytes + 2];
  std::memcpy(trailer, check.data(), check.size());
  std::memcpy(trailer + check.size(), "\r\n", 2);
  std::string key = layout_.chunk(blob_, chunks_);
  std::string header = "*3\r\n$3\r\nSET\r\n$" + std::to_string(key.size()) + "\r\n" + key +
                       "\r\n$" + std::to_string(data.size() + check.size()) + "\r\n";
  const std::string_view pieces[] = {header, data, std::string_view(trailer, sizeof trailer)};
  conn_->send_formatted(pieces);
  ++chunks_;
  size_ += data.size();
  auto now = std::chrono::steady_clock::now();
  if (now - last_heartbeat_ >= kHeartbeatEvery) {
    conn_->append({"EVAL", store::kScriptHeartbeat, "1", layout_.writing(), blob_});
    last_heartbeat_ = now;
  }
  drain(options_.pipeline_depth);
  return ticket;
}

void StoreWriter::Buf::flush_chunk() {
  auto n = static_cast<std::size_t>(pptr() - pbase());
  if (n == 0) return;
  buf_ticket_[cur_] = send_chunk(std::string_view(pbase(), n));
  // Fill the next buffer while this one is hashed.
  cur_ = (cur_ + 1) % kChunkBuffers;
  std::string& next = bufs_[cur_];
  if (next.empty()) next.resize(options_.chunk_size);
  sha_.wait(buf_ticket_[cur_]);
  setp(next.data(), next.data() + options_.chunk_size);
}

std::span<char> StoreWriter::Buf::free_space() {
  return guarded([&] {
    if (pptr() == epptr()) flush_chunk();
    return std::span<char>(pptr(), static_cast<std::size_t>(epptr() - pptr()));
  });
}

void StoreWriter::Buf::filled(std::size_t n) {
  check_open();
  pbump(static_cast<int>(n));
}

StoreWriter::Buf::int_type StoreWriter::Buf::overflow(int_type ch) {
  return guarded([&] {
    flush_chunk();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  });
}

std::streamsize StoreWriter::Buf::xsputn(const char* s, std::streamsize n) {
  return guarded([&] {
    std::streamsize done = 0;
    // Whole chunks are sent straight from the caller's bytes, which the hasher may still be
    // reading: wait for it before returning or throwing.
    std::uint64_t direct_ticket = 0;
    struct WaitForHasher {
      store::HashPipeline& sha;
      const std::uint64_t& ticket;
      ~WaitForHasher() {
        if (ticket != 0) sha.wait(ticket);
      }
    } wait_for_hasher{sha_, direct_ticket};
    const auto chunk = static_cast<std::streamsize>(options_.chunk_size);
    while (done < n) {
      if (pptr() == pbase() && n - done >= chunk) {
        direct_ticket = send_chunk(std::string_view(s + done, options_.chunk_size));
        done += chunk;
        continue;
      }
      if (pptr() == epptr()) flush_chunk();
      auto room = static_cast<std::streamsize>(epptr() - pptr());
      auto take = std::min(room, n - done);
      std::memcpy(pptr(), s + done, static_cast<std::size_t>(take));
      pbump(static_cast<int>(take));
      done += take;
    }
    return done;
  });
}

FileStat StoreWriter::Buf::commit() {
  if (state_ == State::kCommitted) return stat_;
  guarded([&] {
    flush_chunk();
    drain(0);
  });
  std::string_view type;
  try {
    type = store::detect_content_type(name_, head_, tail_, size_);
  } catch (const StoreError&) {
    abort();
    throw;
  }
  std::string sha = options_.sha256_on_write ? sha_.finish() : std::string();
  store::Reply r = guarded([&] {
    return conn_->call({"EVAL", store::kScriptCommit, "5", layout_.file(name_), layout_.writing(),
                        layout_.names(), layout_.atime(), layout_.retired(), blob_, name_,
                        std::to_string(size_), sha, type, std::to_string(options_.chunk_size),
                        std::to_string(chunks_), store::kChunkCheckName});
  });
  state_ = State::kCommitted;
  auto now = store::from_ms(std::stoll(std::string(r.str())));
  stat_ = FileStat{name_, size_, sha, std::string(type), now, now, false};
  return stat_;
}

void StoreWriter::Buf::abort() noexcept {
  if (state_ == State::kCommitted || state_ == State::kAborted) return;
  state_ = State::kAborted;
  if (!conn_ || conn_->broken()) return;  // the janitor collects the orphan
  try {
    // Collect every outstanding reply, errors included (a lost lease, OOM): what was stored is
    // deleted all the same.
    while (conn_->pending() > 0 && !conn_->broken()) {
      try {
        conn_->read_reply();
      } catch (const StoreError&) {
        // An error reply is a reply: it is read, and the writer is being aborted anyway.
      }
    }
    if (conn_->broken()) return;
    // Delete exactly what this writer wrote: its own count is right even if the janitor has
    // already deleted a prefix of the blob.
    constexpr std::uint64_t kBatch = 256;
    for (std::uint64_t i = 0; i < chunks_; i += kBatch) {
      std::vector<std::string> keys;
      for (std::uint64_t j = i; j < std::min(chunks_, i + kBatch); ++j)
        keys.push_back(layout_.chunk(blob_, j));
      std::vector<std::string_view> args{"UNLINK"};
      args.insert(args.end(), keys.begin(), keys.end());
      conn_->call(args);
    }
    conn_->call({"ZREM", layout_.writing(), blob_});
  } catch (...) {
    // Best effort: whatever is left is an orphan blob that the janitor collects.
  }
}

StoreWriter::StoreWriter(std::unique_ptr<Buf> buf) : std::ostream(nullptr), buf_(std::move(buf)) {
  rdbuf(buf_.get());
  exceptions(std::ios::badbit);
}

StoreWriter::StoreWriter(StoreWriter&& other) noexcept
    : std::ostream(std::move(other)), buf_(std::move(other.buf_)) {
  set_rdbuf(buf_.get());
  other.set_rdbuf(nullptr);
}

StoreWriter& StoreWriter::operator=(StoreWriter&& other) noexcept {
  if (this != &other) {
    std::ostream::operator=(std::move(other));
    buf_ = std::move(other.buf_);
    set_rdbuf(buf_.get());
    other.set_rdbuf(nullptr);
  }
  return *this;
}

StoreWriter::~StoreWriter() = default;

FileStat StoreWriter::commit() {
  if (!buf_) throw StoreError(StoreError::Code::kInvalidArgument, "commit on a moved-from writer");
  return buf_->commit();
}

void StoreWriter::abort() noexcept {
  if (buf_) buf_->abort();
}

bool StoreWriter::committed() const noexcept { return buf_ && buf_->committed(); }

// ---------------------------------------------------------------------------------------------
// Reader

StoreReader::Buf::Buf(const StoreOptions& options, store::Session session, store::FileMeta meta)
    : options_(options),
      session_(std::move(session)),
      layout_(options.key_prefix),
      meta_(std::move(meta)) {
  if (!meta_.check.empty() && meta_.check != store::kChunkCheckName)
    throw StoreError(StoreError::Code::kCorrupt,
                     "'" + meta_.stat.name + "' has chunk check values of kind '" + meta_.check +
                         "', which this version of the store does not know");
  chunk_checks_ = !meta_.check.empty();
  // Files without chunk check values are verified by their SHA-256 alone.
  hash_file_ = options_.verify_reads && (options_.verify_sha256 || !chunk_checks_);
}

void StoreReader::Buf::request_more() {
  std::uint64_t depth = std::max<std::size_t>(options_.pipeline_depth, 1);
  while (requested_ < meta_.chunks && requested_ - next_ < depth) {
    conn_->append({"GET", layout_.chunk(meta_.blob, requested_)});
    ++requested_;
  }
}

bool StoreReader::Buf::next_chunk() {
  // Chunk reads are idempotent: after a lost connection, reconnect and ask again from the
  // chunk we need. The blob itself never changes, so the bytes are the same.
  return store::retry_loop(
      "reading '" + meta_.stat.name + "'", options_.retry_window,
      [&] {
        if (!conn_ || conn_->broken()) {
          conn_ = session_.fresh();
          requested_ = next_;
        }
        request_more();
        return conn_->read_bulk(current_);
      },
      [&] { conn_.reset(); });
}

void StoreReader::Buf::record_sha256(const std::string& sha256) {
  meta_.stat.sha256 = sha256;
  try {
    // A connection of its own: the reader's replies are parsed by read_bulk.
    session_.fresh()->call({"EVAL", store::kScriptRecordSha256, "1", layout_.file(meta_.stat.name),
                            meta_.blob, sha256});
  } catch (const StoreError&) {
    // The next stat() computes it again.
  }
}

StoreReader::Buf::int_type StoreReader::Buf::underflow() {
  if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
  if (hash_file_ && !current_data_.empty()) {
    // The hasher reads this chunk while the caller consumes the next one.
    std::uint64_t ticket = sha_.submit(current_data_);
    hashing_.emplace_back(ticket, std::move(current_));
    current_ = store::ByteBuffer();
    if (!spare_.empty()) {
      current_ = std::move(spare_.back());
      spare_.pop_back();
    }
  }
  current_data_ = {};
  if (next_ >= meta_.chunks) {
    if (hash_file_ && !verified_) {
      verified_ = true;
      std::string got = sha_.finish();
      hashing_.clear();
      if (consumed_bytes_ == meta_.stat.size && meta_.stat.sha256.empty() && chunk_checks_) {
        // The digest was deferred at write time; every chunk passed its check, so this is it.
        record_sha256(got);
      } else if (consumed_bytes_ != meta_.stat.size || got != meta_.stat.sha256) {
        throw StoreError(StoreError::Code::kCorrupt,
                         "'" + meta_.stat.name + "' is corrupt: read " +
                             std::to_string(consumed_bytes_) + " bytes with SHA-256 " + got +
                             ", expected " + std::to_string(meta_.stat.size) + " bytes with " +
                             meta_.stat.sha256);
      }
    }
    return traits_type::eof();
  }
  if (!next_chunk())
    throw StoreError(StoreError::Code::kConflict,
                     "the version of '" + meta_.stat.name + "' being read (blob " + meta_.blob +
                         ") was deleted while it was read: it was replaced or removed longer "
                         "than the janitor's orphan grace ago, evicted, or redis restarted");
  std::string_view data = current_.view();
  std::uint64_t expected =
      next_ + 1 < meta_.chunks ? meta_.chunk_size : meta_.stat.size - next_ * meta_.chunk_size;
  std::size_t check_bytes = chunk_checks_ ? store::kChunkCheckBytes : 0;
  if (data.size() != expected + check_bytes)
    throw StoreError(StoreError::Code::kCorrupt,
                     "'" + meta_.stat.name + "' is corrupt: chunk " + std::to_string(next_) +
                         " has " + std::to_string(data.size()) + " bytes, expected " +
                         std::to_string(expected + check_bytes));
  if (chunk_checks_) {
    std::string_view stored = data.substr(expected);
    data = data.substr(0, expected);
    if (options_.verify_reads) {
      store::ChunkCheck check = store::chunk_check(next_, data);
      if (std::memcmp(check.data(), stored.data(), check.size()) != 0)
        throw StoreError(StoreError::Code::kCorrupt,
                         "'" + meta_.stat.name + "' is corrupt: chunk " + std::to_string(next_) +
                             " of blob " + meta_.blob +
                             " does not match its crc32c-x4 check value (changed after it was "
                             "written, or not written by this file's writer)");
    }
  }
  current_data_ = data;
  ++next_;
  consumed_bytes_ += data.size();
  if (hash_file_) {
    while (hashing_.size() > 2) {
      sha_.wait(hashing_.front().first);
      spare_.push_back(std::move(hashing_.front().second));
      hashing_.pop_front();
    }
  }
  char* begin = const_cast<char*>(data.data());
  setg(begin, begin, begin + data.size());
  return traits_type::to_int_type(*gptr());
}

std::string_view StoreReader::Buf::take() {
  if (gptr() == egptr() && traits_type::eq_int_type(underflow(), traits_type::eof())) return {};
  std::string_view available(gptr(), static_cast<std::size_t>(egptr() - gptr()));
  setg(eback(), egptr(), egptr());
  return available;
}

bool StoreReader::Buf::take_buffer(store::ByteBuffer& buffer, std::string_view& data) {
  if (hash_file_)
    throw StoreError(StoreError::Code::kInvalidArgument, "take_buffer while hashing the file");
  data = take();
  if (data.empty()) return false;
  std::swap(current_, buffer);
  current_data_ = {};
  return true;
}

std::streamsize StoreReader::Buf::showmanyc() {
  std::uint64_t left = meta_.stat.size - consumed_bytes_;
  return left == 0 && next_ >= meta_.chunks ? -1 : static_cast<std::streamsize>(left);
}

StoreReader::StoreReader(std::unique_ptr<Buf> buf) : std::istream(nullptr), buf_(std::move(buf)) {
  rdbuf(buf_.get());
  exceptions(std::ios::badbit);
}

StoreReader::StoreReader(StoreReader&& other) noexcept
    : std::istream(std::move(other)), buf_(std::move(other.buf_)) {
  set_rdbuf(buf_.get());
  other.set_rdbuf(nullptr);
}

StoreReader& StoreReader::operator=(StoreReader&& other) noexcept {
  if (this != &other) {
    std::istream::operator=(std::move(other));
    buf_ = std::move(other.buf_);
    set_rdbuf(buf_.get());
    other.set_rdbuf(nullptr);
  }
  return *this;
}

StoreReader::~StoreReader() = default;

const FileStat& StoreReader::stat() const noexcept { return buf_->stat(); }

}  // namespace clupy
