// clupy::Store: metadata operations, uploads and downloads. Streams are in streams.cc.
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <clupy/store.hpp>
#include <cstring>
#include <filesystem>
#include <span>
#include <sstream>
#include <utility>

#include "base/hex.hpp"
#include "store/background_writer.hpp"
#include "store/content_type.hpp"
#include "store/internal.hpp"

namespace clupy {
namespace store {
namespace {

std::uint64_t to_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return 0;
  return v;
}

// Smallest string greater than every string that starts with `prefix`, or "" if none.
std::string prefix_upper_bound(std::string prefix) {
  while (!prefix.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(prefix.back());
    if (last != 0xff) {
      ++last;
      return prefix;
    }
    prefix.pop_back();
  }
  return {};
}

[[noreturn]] void local_error(const std::string& what, const std::string& path) {
  throw StoreError(StoreError::Code::kLocalIo, what + " '" + path + "': " + std::strerror(errno));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// Reads up to n bytes at offset (short only at end of file).
std::string pread_some(int fd, std::size_t n, off_t offset, const std::string& path) {
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, out.data() + got, n - got, offset + static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) local_error("cannot read", path);
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  out.resize(got);
  return out;
}

}  // namespace

std::chrono::system_clock::time_point from_ms(long long ms) {
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
}

long long to_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

FileMeta parse_meta(const std::string& name, Reply::View fields) {
  FileMeta m;
  m.stat.name = name;
  bool have_blob = false, have_size = false;
  for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
    std::string_view k = fields[i].str(), v = fields[i + 1].str();
    if (k == "blob") {
      m.blob = std::string(v);
      have_blob = true;
    } else if (k == "size") {
      m.stat.size = to_u64(v);
      have_size = true;
    } else if (k == "sha256") {
      m.stat.sha256 = std::string(v);
    } else if (k == "type") {
      m.stat.content_type = std::string(v);
    } else if (k == "chunk_size") {
      m.chunk_size = to_u64(v);
    } else if (k == "chunks") {
      m.chunks = to_u64(v);
    } else if (k == "check") {
      m.check = std::string(v);
    } else if (k == "created") {
      m.stat.created = from_ms(static_cast<long long>(to_u64(v)));
    } else if (k == "atime") {
      m.stat.last_access = from_ms(static_cast<long long>(to_u64(v)));
    } else if (k == "pinned") {
      m.stat.pinned = v == "1";
    }
  }
  if (!have_blob || !have_size || (m.chunks > 0 && m.chunk_size == 0))
    throw StoreError(StoreError::Code::kCorrupt, "the metadata of '" + name + "' is incomplete");
  return m;
}

void validate_name(std::string_view name) {
  constexpr std::size_t kMaxName = 4096;
  std::string why;
  if (name.empty())
    why = "it is empty";
  else if (name.size() > kMaxName)
    why = "it is longer than 4096 bytes";
  else if (name.find_first_of(std::string_view("\0\r\n", 3)) != std::string_view::npos)
    why = "it contains a NUL or line break";
  if (!why.empty())
    throw StoreError(StoreError::Code::kInvalidArgument,
                     "invalid file name '" + std::string(name) + "': " + why);
}

void validate_options(const StoreOptions& o) {
  auto bad = [](const std::string& why) {
    throw StoreError(StoreError::Code::kInvalidArgument, "invalid store options: " + why);
  };
  parse_redis_url(o.redis_url);
  if (o.chunk_size == 0 || o.chunk_size > (std::size_t{512} << 20))
    bad("chunk_size must be between 1 byte and 512 MiB");
  if (o.connect_timeout.count() <= 0 || o.op_timeout.count() <= 0) bad("timeouts must be positive");
  if (o.pipeline_depth == 0) bad("pipeline_depth must be at least 1");
}

std::string new_blob_id() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    throw StoreError(StoreError::Code::kLocalIo, "no randomness for a blob id (RAND_bytes)");
  return base::to_hex(std::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes));
}

HashPipeline::~HashPipeline() {
  if (worker_.joinable()) {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
}

std::uint64_t HashPipeline::submit(std::string_view data) {
  constexpr std::size_t kInline = 256 * 1024;
  std::unique_lock lock(mutex_);
  std::uint64_t ticket = ++submitted_;
  if (!worker_.joinable() && data.size() < kInline) {
    // Nothing queued without a worker, so hashing here keeps the order.
    sha_.update(data);
    hashed_ = ticket;
    return ticket;
  }
  if (!worker_.joinable()) worker_ = std::thread([this] { run(); });
  queue_.push_back(data);
  cv_.notify_all();
  return ticket;
}

void HashPipeline::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;
    std::string_view data = queue_.front();
    lock.unlock();
    sha_.update(data);
    lock.lock();
    queue_.pop_front();
    ++hashed_;
    cv_.notify_all();
  }
}

void HashPipeline::wait(std::uint64_t ticket) {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return hashed_ >= ticket; });
}

std::string HashPipeline::finish() {
  wait(submitted_);
  return base::to_hex(sha_.finish());
}

Deleted delete_blob_chunks(RedisConnection& conn, const Layout& layout, std::string_view blob) {
  constexpr std::uint64_t kBatch = 128;
  Deleted total;
  for (std::uint64_t first = 0;; first += kBatch) {
    std::vector<std::string> keys;
    for (std::uint64_t i = first; i < first + kBatch; ++i) keys.push_back(layout.chunk(blob, i));
    for (const auto& k : keys) conn.append({"STRLEN", k});
    std::vector<std::string_view> unlink{"UNLINK"};
    unlink.insert(unlink.end(), keys.begin(), keys.end());
    conn.append(unlink);
    for (std::size_t i = 0; i < keys.size(); ++i)
      total.bytes += static_cast<std::uint64_t>(conn.read_reply().integer());
    auto n = static_cast<std::uint64_t>(conn.read_reply().integer());
    total.chunks += n;
    if (n == 0) return total;
  }
}

}  // namespace store

// ---------------------------------------------------------------------------------------------

class Store::Impl {
 public:
  explicit Impl(StoreOptions options)
      : options_((store::validate_options(options), std::move(options))),
        layout_(options_.key_prefix),
        session_(store::parse_redis_url(options_.redis_url), options_) {}

  StoreOptions options_;
  store::Layout layout_;
  store::Session session_;

  store::FileMeta open_meta(const std::string& name) {
    store::validate_name(name);
    return session_.retry("opening '" + name + "'", [&](store::RedisConnection& c) {
      store::Reply r =
          c.call({"EVAL", store::kScriptOpen, "2", layout_.file(name), layout_.atime(), name});
      if (r.is_nil() || r.size() == 0)
        throw StoreError(StoreError::Code::kNotFound, "no file named '" + name + "' in the store");
      return store::parse_meta(name, r.view());
    });
  }
};

Store::Store(StoreOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Store::~Store() = default;
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;

const StoreOptions& Store::options() const noexcept { return impl_->options_; }

void Store::ping() {
  impl_->session_.retry("ping", [](store::RedisConnection& c) { return c.call({"PING"}); });
}

StoreWriter Store::open_write(const std::string& name) {
  store::validate_name(name);
  // Starting a write registers a fresh blob, which is harmless to repeat.
  auto buf = store::retry_loop(
      "opening '" + name + "' for writing", impl_->options_.retry_window,
      [&] {
        return std::make_unique<StoreWriter::Buf>(impl_->options_, impl_->session_.endpoint(),
                                                  name);
      },
      [] {});
  return StoreWriter(std::move(buf));
}

StoreReader Store::open_read(const std::string& name) {
  store::FileMeta meta = impl_->open_meta(name);
  return StoreReader(std::make_unique<StoreReader::Buf>(
      impl_->options_, store::Session(impl_->session_.endpoint(), impl_->options_),
      std::move(meta)));
}

bool Store::exists(const std::string& name) {
  store::validate_name(name);
  return impl_->session_.retry("exists '" + name + "'", [&](store::RedisConnection& c) {
    return c.call({"EXISTS", impl_->layout_.file(name)}).integer() == 1;
  });
}

FileStat Store::stat(const std::string& name) {
  store::validate_name(name);
  store::FileMeta meta =
      impl_->session_.retry("stat '" + name + "'", [&](store::RedisConnection& c) {
        store::Reply r = c.call({"HGETALL", impl_->layout_.file(name)});
        if (r.size() == 0)
          throw StoreError(StoreError::Code::kNotFound,
                           "no file named '" + name + "' in the store");
        return store::parse_meta(name, r.view());
      });
  if (!meta.stat.sha256.empty()) return std::move(meta.stat);
  // Written with the digest deferred: read this version once, checking every chunk, and record
  // it. Not an access for the janitor's idle clock, so no open script.
  StoreOptions hashing = impl_->options_;
  hashing.verify_reads = true;
  hashing.verify_sha256 = true;
  StoreReader::Buf reader(hashing, store::Session(impl_->session_.endpoint(), hashing),
                          std::move(meta));
  while (!reader.take().empty()) {
  }
  return reader.stat();
}

std::vector<FileStat> Store::list(const std::string& prefix) {
  return impl_->session_.retry("list '" + prefix + "'", [&](store::RedisConnection& c) {
    std::string upper = store::prefix_upper_bound(prefix);
    store::Reply names = c.call({"ZRANGEBYLEX", impl_->layout_.names(), "[" + prefix,
                                 upper.empty() ? std::string("+") : "(" + upper});
    std::vector<FileStat> out;
    constexpr std::size_t kBatch = 256;
    for (std::size_t first = 0; first < names.size(); first += kBatch) {
      std::size_t last = std::min(names.size(), first + kBatch);
      for (std::size_t i = first; i < last; ++i)
        c.append({"HGETALL", impl_->layout_.file(names[i].str())});
      for (std::size_t i = first; i < last; ++i) {
        store::Reply r = c.read_reply();
        if (r.size() == 0) continue;  // removed since the listing
        out.push_back(store::parse_meta(std::string(names[i].str()), r.view()).stat);
      }
    }
    return out;
  });
}

bool Store::remove(const std::string& name) {
  store::validate_name(name);
  const auto& L = impl_->layout_;
  return impl_->session_.retry("remove '" + name + "'", [&](store::RedisConnection& c) {
    return c.call({"EVAL", store::kScriptRemove, "4", L.file(name), L.names(), L.atime(),
                   L.retired(), name})
               .integer() == 1;
  });
}

namespace {
void set_pin(Store::Impl& impl, const std::string& name, bool pinned) {
  store::validate_name(name);
  bool found = impl.session_.retry(
      std::string(pinned ? "pin '" : "unpin '") + name + "'", [&](store::RedisConnection& c) {
        return c.call({"EVAL", store::kScriptPin, "1", impl.layout_.file(name), pinned ? "1" : "0"})
                   .integer() == 1;
      });
  if (!found)
    throw StoreError(StoreError::Code::kNotFound, "no file named '" + name + "' in the store");
}
}  // namespace

void Store::pin(const std::string& name) { set_pin(*impl_, name, true); }
void Store::unpin(const std::string& name) { set_pin(*impl_, name, false); }

void Store::rename(const std::string& from, const std::string& to) {
  store::validate_name(from);
  store::validate_name(to);
  const auto& L = impl_->layout_;
  // Not retried: after a lost reply, a second attempt would fail with kNotFound although the
  // first one succeeded.
  impl_->session_.connection().call({"EVAL", store::kScriptRename, "5", L.file(from), L.file(to),
                                     L.names(), L.atime(), L.retired(), from, to});
}

FileStat Store::put_file(const std::string& local_path, const std::string& name,
                         const TransferProgress& progress) {
  store::validate_name(name);
  store::Fd fd(::open(local_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) store::local_error("cannot open", local_path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) store::local_error("cannot stat", local_path);
  if (!S_ISREG(st.st_mode))
    throw StoreError(StoreError::Code::kLocalIo, "'" + local_path + "' is not a regular file");
  auto total = static_cast<std::uint64_t>(st.st_size);
  // Refuse a fake Parquet file before uploading anything; the writer checks again on commit
  // against the store name and the bytes actually sent.
  {
    std::string head = store::pread_some(fd.get(), store::kSniffHeadBytes, 0, local_path);
    off_t tail_at = st.st_size > static_cast<off_t>(store::kSniffTailBytes)
                        ? st.st_size - static_cast<off_t>(store::kSniffTailBytes)
                        : 0;
    std::string tail = store::pread_some(fd.get(), store::kSniffTailBytes, tail_at, local_path);
    store::detect_content_type(local_path, head, tail, total);
  }
  StoreWriter writer = open_write(name);
  std::uint64_t done = 0;
  if (progress) progress(0, total);
  while (true) {
    // Straight into the writer's chunk buffer: no copy between the page cache and the socket.
    std::span<char> space = writer.buf_->free_space();
    ssize_t n = ::read(fd.get(), space.data(), space.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) store::local_error("cannot read", local_path);
    if (n == 0) break;
    writer.buf_->filled(static_cast<std::size_t>(n));
    done += static_cast<std::uint64_t>(n);
    if (progress) progress(done, std::max(done, total));
  }
  return writer.commit();
}

FileStat Store::get_file(const std::string& name, const std::string& local_path,
                         const TransferProgress& progress) {
  StoreReader reader = open_read(name);
  FileStat st = reader.stat();
  std::filesystem::path target(local_path);
  std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  std::string tmp = (dir / ("." + target.filename().string() + ".clupy-XXXXXX")).string();
  store::Fd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (fd.get() < 0) store::local_error("cannot create a temporary file in", dir.string());
  try {
    ::fchmod(fd.get(), 0644);
    std::uint64_t done = 0;
    if (progress) progress(0, st.size);
    // Each chunk is written from the buffer it arrived in (no copy); take() and take_buffer()
    // report the end only after the end-of-file checks passed.
    if (reader.buf_->hashes_file()) {
      for (std::string_view chunk = reader.buf_->take(); !chunk.empty();
           chunk = reader.buf_->take()) {
        while (!chunk.empty()) {
          ssize_t w = ::write(fd.get(), chunk.data(), chunk.size());
          if (w < 0 && errno == EINTR) continue;
          if (w < 0) store::local_error("cannot write", tmp);
          chunk.remove_prefix(static_cast<std::size_t>(w));
          done += static_cast<std::uint64_t>(w);
        }
        if (progress) progress(done, st.size);
      }
    } else {
      // A helper thread writes the file while the next chunks are read (and checked).
      store::BackgroundWriter file_writer(fd.get(), tmp);
      store::ByteBuffer buffer;
      std::string_view chunk;
      while (reader.buf_->take_buffer(buffer, chunk)) {
        done += chunk.size();
        file_writer.write(std::move(buffer), chunk);
        buffer = file_writer.spare();
        if (progress) progress(done, st.size);
      }
      file_writer.finish();
    }
    if (::close(fd.release()) != 0) store::local_error("cannot write", tmp);
    if (::rename(tmp.c_str(), local_path.c_str()) != 0)
      store::local_error("cannot rename to", local_path);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  return reader.stat();  // a verifying read may have recorded a deferred digest
}

CsvReader Store::read_csv(const std::string& name) {
  return CsvReader(std::make_unique<StoreReader>(open_read(name)));
}

FileStat Store::write_csv(const std::string& name,
                          const std::vector<std::vector<std::string>>& rows) {
  StoreWriter w = open_write(name);
  for (const auto& row : rows) write_csv_row(w, row);
  return w.commit();
}

}  // namespace clupy
