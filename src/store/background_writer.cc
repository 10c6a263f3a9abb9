#include "store/background_writer.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace clupy::store {

BackgroundWriter::BackgroundWriter(int fd, std::string path)
    : fd_(fd), path_(std::move(path)), thread_([this] { run(); }) {}

BackgroundWriter::~BackgroundWriter() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void BackgroundWriter::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    changed_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty() || error_ != 0) return;
    Item item = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    lock.unlock();
    int error = 0;
    std::string_view left = item.data;
    while (!left.empty()) {
      ssize_t n = ::write(fd_, left.data(), left.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = errno;
        break;
      }
      left.remove_prefix(static_cast<std::size_t>(n));
    }
    lock.lock();
    writing_ = false;
    if (error != 0 && error_ == 0) error_ = error;
    spares_.push_back(std::move(item.buffer));
    changed_.notify_all();
  }
}

void BackgroundWriter::throw_if_failed() {
  if (error_ != 0)
    throw StoreError(StoreError::Code::kLocalIo,
                     "cannot write '" + path_ + "': " + std::strerror(error_));
}

void BackgroundWriter::write(ByteBuffer buffer, std::string_view data) {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return error_ != 0 || queue_.size() < kMaxQueued; });
  throw_if_failed();
  queue_.push_back(Item{std::move(buffer), data});
  changed_.notify_all();
}

ByteBuffer BackgroundWriter::spare() {
  std::lock_guard lock(mutex_);
  if (spares_.empty()) return ByteBuffer();
  ByteBuffer b = std::move(spares_.back());
  spares_.pop_back();
  return b;
}

void BackgroundWriter::finish() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return error_ != 0 || (queue_.empty() && !writing_); });
  throw_if_failed();
}

}  // namespace clupy::store
