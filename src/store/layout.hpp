// The Redis key layout of the store and the Lua scripts that change it atomically. The layout is
// documented in docs/store.md; change both together. All keys start with the key prefix P:
//   P file:<name>          hash   blob size sha256 type chunk_size chunks check created atime
//                                 pinned (check: "crc32c-x4", absent in files of older writers)
//   P chunk:<blob>:<i>     string the i-th chunk of a blob (i from 0; all but the last are full),
//                                 followed by its 16-byte check value when the file has `check`
//   P names                zset   every file name, score 0 (ZRANGEBYLEX lists a prefix)
//   P atime                zset   name -> last access, ms since the epoch (TTL and LRU order)
//   P writing              zset   blob -> writer heartbeat ms (a blob being written; orphans)
//   P retired              zset   blob -> ms it stopped being current (deleted after the grace)
// Times come from the Redis server's clock (TIME inside scripts), so clients on machines with
// skewed clocks agree.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace clupy::store {

class Layout {
 public:
  explicit Layout(std::string prefix) : p_(std::move(prefix)) {}
  const std::string& prefix() const { return p_; }
  std::string file(std::string_view name) const { return p_ + "file:" + std::string(name); }
  std::string chunk(std::string_view blob, std::uint64_t index) const {
    return p_ + "chunk:" + std::string(blob) + ":" + std::to_string(index);
  }
  std::string names() const { return p_ + "names"; }
  std::string atime() const { return p_ + "atime"; }
  std::string writing() const { return p_ + "writing"; }
  std::string retired() const { return p_ + "retired"; }

 private:
  std::string p_;
};

// Lua helper prepended to the scripts: the server's time in ms as an integer string.
#define CLUPY_LUA_NOW              \
  "local t = redis.call('TIME')\n" \
  "local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))\n"

// KEYS: writing. ARGV: blob. Registers a blob being written (its heartbeat is now).
inline constexpr std::string_view kScriptBeginWrite = CLUPY_LUA_NOW
    "redis.call('ZADD', KEYS[1], now, ARGV[1])\n"
    "return now\n";

// KEYS: writing. ARGV: blob. Refreshes a writer's heartbeat; 0 when the lease was lost.
inline constexpr std::string_view kScriptHeartbeat = CLUPY_LUA_NOW
    "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end\n"
    "redis.call('ZADD', KEYS[1], now, ARGV[1])\n"
    "return 1\n";

// KEYS: file, writing, names, atime, retired.
// ARGV: blob, name, size, sha256, type, chunk_size, chunks, check.
// Publishes a written blob as the file's current version in one step; the replaced version's
// blob is retired (readers that have it open finish it; the janitor deletes it after the grace).
// Repeating a commit that already happened (its reply was lost) succeeds.
inline constexpr std::string_view kScriptCommit = CLUPY_LUA_NOW
    "if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then\n"
    "  if redis.call('HGET', KEYS[1], 'blob') == ARGV[1] then return now end\n"
    "  return redis.error_reply('CLUPY_CONFLICT the write lease of ' .. ARGV[2] ..\n"
    "    ' was lost: the writer stalled longer than the janitor\\'s orphan grace, or redis '..\n"
    "    'restarted; nothing was published')\n"
    "end\n"
    "local old = redis.call('HGET', KEYS[1], 'blob')\n"
    "local pinned = redis.call('HGET', KEYS[1], 'pinned') or '0'\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], 'blob', ARGV[1], 'size', ARGV[3], 'sha256', ARGV[4],\n"
    "  'type', ARGV[5], 'chunk_size', ARGV[6], 'chunks', ARGV[7], 'check', ARGV[8],\n"
    "  'created', now, 'atime', now, 'pinned', pinned)\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "redis.call('ZADD', KEYS[3], 0, ARGV[2])\n"
    "redis.call('ZADD', KEYS[4], now, ARGV[2])\n"
    "if old then redis.call('ZADD', KEYS[5], now, old) end\n"
    "return now\n";

// KEYS: file. ARGV: blob, sha256. Records the digest of a file written without one (deferred at
// write time), if the file is still that blob: a digest never lands on a newer version.
inline constexpr std::string_view kScriptRecordSha256 =
    "if redis.call('HGET', KEYS[1], 'blob') ~= ARGV[1] then return 0 end\n"
    "local old = redis.call('HGET', KEYS[1], 'sha256')\n"
    "if old and old ~= '' then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'sha256', ARGV[2])\n"
    "return 1\n";

// KEYS: file, atime. ARGV: name. Opens a file for reading: records the access and returns the
// metadata hash (HGETALL form), or nil.
inline constexpr std::string_view kScriptOpen = CLUPY_LUA_NOW
    "if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n"
    "redis.call('HSET', KEYS[1], 'atime', now)\n"
    "redis.call('ZADD', KEYS[2], now, ARGV[1])\n"
    "return redis.call('HGETALL', KEYS[1])\n";

// KEYS: file, names, atime, retired. ARGV: name. 1 if removed, 0 if there was no such file.
inline constexpr std::string_view kScriptRemove = CLUPY_LUA_NOW
    "local blob = redis.call('HGET', KEYS[1], 'blob')\n"
    "if not blob then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "redis.call('ZADD', KEYS[4], now, blob)\n"
    "return 1\n";

// KEYS: from, to, names, atime, retired. ARGV: from name, to name.
inline constexpr std::string_view kScriptRename = CLUPY_LUA_NOW
    "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  return redis.error_reply('CLUPY_NOT_FOUND no file named ' .. ARGV[1])\n"
    "end\n"
    "if ARGV[1] == ARGV[2] then return 1 end\n"
    "local old = redis.call('HGET', KEYS[2], 'blob')\n"
    "local at = redis.call('ZSCORE', KEYS[4], ARGV[1]) or now\n"
    "redis.call('RENAME', KEYS[1], KEYS[2])\n"
    "redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "redis.call('ZADD', KEYS[3], 0, ARGV[2])\n"
    "redis.call('ZREM', KEYS[4], ARGV[1])\n"
    "redis.call('ZADD', KEYS[4], at, ARGV[2])\n"
    "if old then redis.call('ZADD', KEYS[5], now, old) end\n"
    "return 1\n";

// KEYS: file. ARGV: '0' or '1'. 1 if the file exists.
inline constexpr std::string_view kScriptPin =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'pinned', ARGV[1])\n"
    "return 1\n";

// Janitor. KEYS: file, names, atime, retired. ARGV: name, expected blob, max atime (ms), honour
// pins ('1'/'0'). Removes the file only if it is still that version, not pinned (when honoured)
// and not accessed after max atime, so a reader that opens it meanwhile wins. Its blob is retired
// with score 0: deleted by the next collection, no grace (the file was idle).
inline constexpr std::string_view kScriptEvict =
    "local h = redis.call('HMGET', KEYS[1], 'blob', 'pinned', 'atime')\n"
    "if h[1] ~= ARGV[2] then return 0 end\n"
    "if ARGV[4] == '1' and h[2] == '1' then return 0 end\n"
    "if tonumber(h[3]) > tonumber(ARGV[3]) then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "redis.call('ZADD', KEYS[4], 0, ARGV[2])\n"
    "return 1\n";

// Janitor. KEYS: writing, retired. ARGV: blob, cutoff ms. Claims an orphan whose writer's last
// heartbeat is at or before the cutoff: from now on its writer cannot commit.
inline constexpr std::string_view kScriptClaimOrphan =
    "local s = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
    "if not s or tonumber(s) > tonumber(ARGV[2]) then return 0 end\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('ZADD', KEYS[2], 0, ARGV[1])\n"
    "return 1\n";

}  // namespace clupy::store
