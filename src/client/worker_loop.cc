#include "client/worker_loop.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "clupy.pb.h"
#include "clupy/detail/call.hpp"
#include "common/frame.hpp"

namespace clupy::client {
namespace {

bool write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

std::string run_one(const std::string& call_bytes) {
  detail::CallOutcome outcome;
  try {
    outcome = detail::execute_call(detail::parse_call(call_bytes));
  } catch (const std::exception& e) {
    outcome.ok = false;
    outcome.failure.kind = FailureKind::kProtocol;
    outcome.failure.message = std::string("the task's call could not be decoded: ") + e.what();
  }
  return detail::serialize_outcome(outcome);
}

}  // namespace

void run_worker_loop(int fd) {
  common::FrameDecoder decoder;
  std::string buffer(1u << 16, '\0');
  wire::Envelope message;
  while (true) {
    auto status = decoder.next(message);
    if (status == common::FrameDecoder::Status::kNeedMore) {
      const ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the server is gone or done with us
      decoder.feed(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
      continue;
    }
    if (status != common::FrameDecoder::Status::kFrame || !message.has_run_task()) {
      std::fprintf(stderr, "clupy worker: bad message from the server (%s); exiting\n",
                   common::to_string(status));
      break;
    }
    wire::Envelope done;
    done.mutable_task_done()->set_task_id(message.run_task().task_id());
    done.mutable_task_done()->set_outcome(run_one(message.run_task().call()));
    // Output written by the task must reach the server before the result, so that it is
    // attributed to this task.
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    std::string frame;
    common::append_frame(done, frame, std::string::npos);
    if (!write_all(fd, frame)) break;
    message.Clear();
  }
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace clupy::client
