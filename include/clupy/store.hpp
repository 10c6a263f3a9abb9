// The CluPy file store: files (CSV, Parquet or any bytes) under path-like names in Redis.
//
// A file is stored as chunks under a fresh blob id and published with one atomic Redis script,
// so a reader sees the old version or the new one, never a mix; a reader that opened a version
// keeps reading it even if the file is replaced meanwhile (old versions are deleted by the
// master's janitor only after a grace period). A writer that dies leaves an invisible orphan
// blob that the janitor collects. Layout and guarantees: docs/store.md.
//
// Threading: a Store is NOT safe for concurrent use; use one Store per thread (they are cheap:
// one lazily opened Redis connection each). A StoreReader or StoreWriter has its own connection,
// may outlive the Store that opened it, and may be used by one thread at a time.
//
// Errors: every failure is a clupy::StoreError (below) whose code() classifies it. Operations
// that are safe to repeat (reads, stat, list, exists, pin, unpin, remove) retry on a lost
// connection for StoreOptions::retry_window before they give up; uploads do not.
#pragma once

#include <chrono>
#include <clupy/errors.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <istream>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace clupy {

// The error of every store call.
class StoreError : public Error {
 public:
  enum class Code {
    kConnection,       // Redis unreachable, or the connection was lost (retries exhausted)
    kServer,           // Redis answered with an error (e.g. OOM, NOAUTH, WRONGTYPE)
    kNotFound,         // no file of that name
    kInvalidArgument,  // a bad name, URL or option
    kRefused,          // content refused on import (a file that claims to be Parquet but is not)
    kConflict,         // the write lease was lost (the janitor collected a stalled writer), or a
                       // file version was deleted while it was being read
    kCorrupt,          // a chunk is missing, or its check value or the SHA-256 does not match
    kLocalIo,          // reading or writing a local file failed
    kCsv,              // malformed CSV (the message names the line)
    kNotConfigured,    // cluster_store(): the cluster has no store, or this process no cluster
  };
  StoreError(Code code, const std::string& what) : Error(what), code_(code) {}
  Code code() const noexcept { return code_; }

 private:
  Code code_;
};

// Where the store lives and how it moves bytes. The defaults match docs/store.md.
struct StoreOptions {
  // redis://[[user]:password@]host[:port][/db] or unix:///path/to.sock[?db=N&password=P].
  // TLS (rediss://) is refused: the hiredis on Debian 12 (0.14) has no TLS.
  std::string redis_url = "redis://127.0.0.1:6379/0";
  // Prepended to every key, so several clusters (or tests) can share one Redis.
  std::string key_prefix = "clupy:";
  // Bytes per chunk of a file written through this Store (readers use the file's own size).
  std::size_t chunk_size = std::size_t{1} << 20;
  std::chrono::milliseconds connect_timeout{2000};
  // Timeout of a single socket read or write.
  std::chrono::milliseconds op_timeout{10000};
  // How long retryable operations keep reconnecting after a lost connection.
  std::chrono::milliseconds retry_window{3000};
  // Chunks in flight per stream (memory per stream is about pipeline_depth * chunk_size).
  std::size_t pipeline_depth = 8;
  // Verify what is read: each chunk's crc32c-x4 check value before its bytes are handed out
  // (memory speed), or, for files written before chunks had check values, the SHA-256 when the
  // read reaches the end. A mismatch throws kCorrupt. Chunk counts and sizes are checked either
  // way (docs/store.md).
  bool verify_reads = true;
  // With verify_reads, also check the whole file's SHA-256 at the end of every read (on a helper
  // thread; about one core at 2 GB/s). An end-to-end check against stat().sha256 for those who
  // want the cryptographic hash itself verified. A file whose digest was not computed yet gets
  // it recorded by such a read instead.
  bool verify_sha256 = false;
  // Compute the SHA-256 while writing, so commit() and put_file() return it. Off by default: it
  // costs about one core at 2 GB/s and would halve a put's speed whenever no core is idle; the
  // first stat() of the file computes the digest (reading the file once) and records it.
  // Integrity does not depend on it: every chunk carries its own check value.
  bool sha256_on_write = false;
};

inline constexpr std::string_view kContentTypeCsv = "text/csv";
inline constexpr std::string_view kContentTypeParquet = "application/vnd.apache.parquet";
inline constexpr std::string_view kContentTypeBinary = "application/octet-stream";

struct FileStat {
  std::string name;
  std::uint64_t size = 0;
  // Lowercase hex. Empty in what put_file(), commit() and list() return when the digest is
  // deferred (StoreOptions::sha256_on_write false and no stat() yet); stat() always fills it.
  std::string sha256;
  std::string content_type;                           // one of the kContentType* values
  std::chrono::system_clock::time_point created;      // when this version was published
  std::chrono::system_clock::time_point last_access;  // last publish or open for reading
  bool pinned = false;  // pinned files are never removed by the janitor
};

// Called during put_file/get_file with bytes done and bytes in total.
using TransferProgress = std::function<void(std::uint64_t done, std::uint64_t total)>;

// An output stream that writes a store file. Nothing is visible until commit() (or close())
// publishes everything written, atomically, replacing any previous version. Destroying an
// uncommitted writer publishes nothing and deletes what it uploaded (best effort; the janitor
// collects the rest). Stream errors throw StoreError (exceptions(badbit) is set).
class StoreWriter : public std::ostream {
 public:
  StoreWriter(StoreWriter&& other) noexcept;
  StoreWriter& operator=(StoreWriter&& other) noexcept;
  ~StoreWriter() override;

  // Publishes the file. Throws kRefused for fake Parquet (nothing is published), kConflict if
  // the write lease was lost, kConnection if Redis went away. At most once; later calls are
  // no-ops that return the same stat.
  FileStat commit();
  FileStat close() { return commit(); }
  // Discards everything written; the writer is unusable afterwards.
  void abort() noexcept;
  bool committed() const noexcept;

  class Buf;

 private:
  friend class Store;
  explicit StoreWriter(std::unique_ptr<Buf> buf);
  std::unique_ptr<Buf> buf_;
};

// An input stream over one version of a store file: the version current when it was opened,
// even if the file is replaced or removed meanwhile (for up to the janitor's grace period;
// past it, reading throws kConflict). Errors throw StoreError (exceptions(badbit) is set).
class StoreReader : public std::istream {
 public:
  StoreReader(StoreReader&& other) noexcept;
  StoreReader& operator=(StoreReader&& other) noexcept;
  ~StoreReader() override;

  const FileStat& stat() const noexcept;

  class Buf;

 private:
  friend class Store;
  explicit StoreReader(std::unique_ptr<Buf> buf);
  std::unique_ptr<Buf> buf_;
};

// Streams the records of an RFC 4180 CSV file: fields separated by ',', records by CRLF or LF,
// double-quoted fields may hold commas, newlines and doubled quotes (""). An empty line is a
// record with no fields. Malformed input throws StoreError kCsv naming the line.
class CsvReader {
 public:
  // Reads from `in`, which must outlive the reader.
  explicit CsvReader(std::istream& in);
  // Owns the stream (e.g. a StoreReader).
  explicit CsvReader(std::unique_ptr<std::istream> in);
  CsvReader(CsvReader&&) noexcept;
  CsvReader& operator=(CsvReader&&) noexcept;
  ~CsvReader();

  // Reads the next record into `row`; false at end of input.
  bool next(std::vector<std::string>& row);
  // 1-based line number where the next record starts.
  std::size_t line() const noexcept;

 private:
  std::unique_ptr<std::istream> owned_;
  std::istream* in_;
  std::size_t line_ = 1;
};

// Writes one CSV record (RFC 4180, CRLF terminated), quoting fields only when needed.
void write_csv_row(std::ostream& out, const std::vector<std::string>& row);

class Store {
 public:
  // Validates the options (throws kInvalidArgument); connects lazily on the first call.
  explicit Store(StoreOptions options);
  ~Store();
  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;

  const StoreOptions& options() const noexcept;
  // Round trip to Redis; throws kConnection when it does not answer.
  void ping();

  // Uploads a local file (throws kLocalIo if unreadable, kRefused for fake Parquet).
  FileStat put_file(const std::string& local_path, const std::string& name,
                    const TransferProgress& progress = {});
  // Downloads into local_path (written to a temporary file and renamed into place, so an
  // interrupted download leaves no partial file); verified as StoreOptions says.
  FileStat get_file(const std::string& name, const std::string& local_path,
                    const TransferProgress& progress = {});

  StoreWriter open_write(const std::string& name);
  StoreReader open_read(const std::string& name);  // throws kNotFound

  bool exists(const std::string& name);
  // Throws kNotFound. Computes and records the SHA-256 if the file has none yet (reads the file
  // once; kCorrupt if a chunk fails its check).
  FileStat stat(const std::string& name);
  // Files whose name starts with `prefix` ("" lists all), sorted by name.
  std::vector<FileStat> list(const std::string& prefix);
  // Returns false when there was no such file. Readers of the removed version finish it.
  bool remove(const std::string& name);
  void pin(const std::string& name);    // throws kNotFound
  void unpin(const std::string& name);  // throws kNotFound
  // Renames atomically, replacing `to` if it exists (like rename(2)). Throws kNotFound.
  void rename(const std::string& from, const std::string& to);

  CsvReader read_csv(const std::string& name);
  FileStat write_csv(const std::string& name, const std::vector<std::vector<std::string>>& rows);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The store of the cluster this process belongs to, as its master announces it (Redis URL, key
// prefix and chunk size; every other option keeps its default). Call it in the program after
// clupy::init() or inside a task on any server: both reach the same files. Each call returns a
// new Store (cheap: it connects on first use); use one per thread. Throws StoreError
// kNotConfigured when the master has no store (no `store:` section in clupy.master.yaml) or
// clupy::init() was not called, kInvalidArgument when what the master announced is unusable.
Store cluster_store();

}  // namespace clupy
