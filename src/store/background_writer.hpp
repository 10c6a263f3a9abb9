// Writes a download's chunks to a local file on a helper thread, so that writing the file (a
// copy into the page cache, and on tmpfs page allocation too) overlaps reading the next chunks
// from Redis instead of adding to it. Internal to src/store (Store::get_file).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "store/redis.hpp"

namespace clupy::store {

class BackgroundWriter {
 public:
  // Writes to `fd` (not owned); `path` is for messages.
  BackgroundWriter(int fd, std::string path);
  // Stops after the queued chunks (or at the first error); does not throw.
  ~BackgroundWriter();
  BackgroundWriter(const BackgroundWriter&) = delete;
  BackgroundWriter& operator=(const BackgroundWriter&) = delete;

  // Queues `data`, which lies in `buffer`, to be written after what is queued already; waits
  // while kMaxQueued chunks are waiting. Throws kLocalIo if an earlier write failed.
  void write(ByteBuffer buffer, std::string_view data);
  // A buffer whose chunk was written (for reuse), or an empty one.
  ByteBuffer spare();
  // Waits until everything queued is written; throws kLocalIo if a write failed.
  void finish();

  static constexpr std::size_t kMaxQueued = 4;

 private:
  struct Item {
    ByteBuffer buffer;
    std::string_view data;
  };
  void run();
  void throw_if_failed();  // with mutex_ held

  int fd_;
  std::string path_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Item> queue_;
  bool writing_ = false;  // the thread holds an item it took from the queue
  std::vector<ByteBuffer> spares_;
  int error_ = 0;  // errno of the first failed write
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace clupy::store
