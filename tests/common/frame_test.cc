#include "common/frame.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "clupy.pb.h"
#include "common/batches.hpp"

namespace clupy::common {
namespace {

wire::Envelope heartbeat(const std::string& id, std::uint32_t busy) {
  wire::Envelope e;
  e.set_request_id(busy);
  e.mutable_heartbeat()->set_server_id(id);
  e.mutable_heartbeat()->set_busy_slots(busy);
  return e;
}

TEST(FrameTest, RoundTripsOneFrame) {
  std::string bytes;
  ASSERT_TRUE(append_frame(heartbeat("s1", 3), bytes));
  FrameDecoder decoder;
  decoder.feed(bytes);
  wire::Envelope out;
  ASSERT_EQ(decoder.next(out), FrameDecoder::Status::kFrame);
  EXPECT_EQ(out.heartbeat().server_id(), "s1");
  EXPECT_EQ(out.heartbeat().busy_slots(), 3u);
  EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kNeedMore);
}

TEST(FrameTest, HeaderIsBigEndianLength) {
  std::string bytes;
  wire::Envelope e = heartbeat("abc", 1);
  ASSERT_TRUE(append_frame(e, bytes));
  ASSERT_EQ(bytes.size(), kFrameHeaderSize + e.ByteSizeLong());
  const auto* h = reinterpret_cast<const unsigned char*>(bytes.data());
  EXPECT_EQ((h[0] << 24 | h[1] << 16 | h[2] << 8 | h[3]), static_cast<int>(e.ByteSizeLong()));
}

TEST(FrameTest, FramesSplitAtEveryByteStillDecode) {
  std::string bytes;
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(append_frame(heartbeat("server-" + std::to_string(i), i), bytes));
  FrameDecoder decoder;
  int decoded = 0;
  wire::Envelope out;
  for (char c : bytes) {
    decoder.feed(std::string_view(&c, 1));
    while (decoder.next(out) == FrameDecoder::Status::kFrame) {
      EXPECT_EQ(out.heartbeat().server_id(), "server-" + std::to_string(decoded));
      ++decoded;
    }
  }
  EXPECT_EQ(decoded, 5);
}

TEST(FrameTest, JoinedFramesDecodeInOrder) {
  std::string bytes;
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(append_frame(heartbeat("s", i), bytes));
  FrameDecoder decoder;
  decoder.feed(bytes);
  wire::Envelope out;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(decoder.next(out), FrameDecoder::Status::kFrame);
    EXPECT_EQ(out.heartbeat().busy_slots(), static_cast<std::uint32_t>(i));
  }
  EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kNeedMore);
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(FrameTest, EmptyEnvelopeIsAValidFrame) {
  std::string bytes;
  ASSERT_TRUE(append_frame(wire::Envelope(), bytes));
  EXPECT_EQ(bytes, std::string(4, '\0'));
  FrameDecoder decoder;
  decoder.feed(bytes);
  wire::Envelope out;
  EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kFrame);
}

TEST(FrameTest, OversizedAnnouncementIsRejectedBeforeBuffering) {
  FrameDecoder decoder(1024);
  decoder.feed(std::string("\x00\x00\x04\x01", 4));  // 1025 bytes announced
  wire::Envelope out;
  EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kOversized);
  EXPECT_EQ(decoder.announced_size(), 1025u);
}

TEST(FrameTest, FrameAtTheLimitIsAccepted) {
  wire::Envelope e;
  e.mutable_error()->set_message(std::string(1000, 'x'));
  const std::size_t limit = e.ByteSizeLong();
  std::string bytes;
  ASSERT_TRUE(append_frame(e, bytes, limit));
  std::string too_small;
  EXPECT_FALSE(append_frame(e, too_small, limit - 1));
  EXPECT_TRUE(too_small.empty());
  FrameDecoder decoder(limit);
  decoder.feed(bytes);
  wire::Envelope out;
  EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kFrame);
}

TEST(FrameTest, GarbageBodyIsUnparsable) {
  FrameDecoder decoder;
  decoder.feed(std::string("\x00\x00\x00\x04\xff\xff\xff\xff", 8));
  wire::Envelope out;
  EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kUnparsable);
}

TEST(FrameTest, TruncatedFrameWaitsForMore) {
  std::string bytes;
  ASSERT_TRUE(append_frame(heartbeat("truncated", 1), bytes));
  FrameDecoder decoder;
  decoder.feed(std::string_view(bytes).substr(0, bytes.size() - 1));
  wire::Envelope out;
  EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kNeedMore);
  EXPECT_EQ(decoder.buffered(), bytes.size() - 1);
  decoder.feed(std::string_view(bytes).substr(bytes.size() - 1));
  EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kFrame);
}

TEST(FrameTest, LongStreamsKeepTheBufferBounded) {
  std::string one;
  wire::Envelope e;
  e.mutable_error()->set_message(std::string(4000, 'y'));
  ASSERT_TRUE(append_frame(e, one));
  FrameDecoder decoder;
  wire::Envelope out;
  // Feed frames one and a half at a time so the buffer never empties completely.
  std::string stream;
  for (int i = 0; i < 400; ++i) stream += one;
  std::size_t offset = 0, step = one.size() * 3 / 2;
  int decoded = 0;
  while (offset < stream.size()) {
    decoder.feed(std::string_view(stream).substr(offset, step));
    offset += step;
    while (decoder.next(out) == FrameDecoder::Status::kFrame) ++decoded;
    EXPECT_LT(decoder.buffered(), 3 * one.size());
  }
  EXPECT_EQ(decoded, 400);
}

// Reads `bytes` into the decoder the way a connection does: into prepare(), `chunk` at a time.
void read_in(FrameDecoder& decoder, std::string_view bytes, std::size_t chunk) {
  while (!bytes.empty()) {
    std::span<char> space = decoder.prepare(chunk);
    ASSERT_GE(space.size(), chunk);
    const std::size_t n = std::min({space.size(), bytes.size(), chunk});
    std::memcpy(space.data(), bytes.data(), n);
    decoder.commit(n);
    bytes.remove_prefix(n);
  }
}

TEST(FrameTest, AnnouncedBodyGetsRoomForAllOfItInOneRead) {
  std::string bytes;
  wire::Envelope big;
  big.mutable_error()->set_message(std::string(3u << 20, 'z'));
  ASSERT_TRUE(append_frame(big, bytes));
  FrameDecoder decoder;
  read_in(decoder, std::string_view(bytes).substr(0, 100), 100);
  // With the header in, the rest of the frame fits in the space offered for the next read.
  EXPECT_GE(decoder.prepare(64).size(), bytes.size() - 100);
  wire::Envelope out;
  EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kNeedMore);
  read_in(decoder, std::string_view(bytes).substr(100), bytes.size());
  ASSERT_EQ(decoder.next(out), FrameDecoder::Status::kFrame);
  EXPECT_EQ(out.error().message(), big.error().message());
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(FrameTest, PreparedReadsSplitAnywhereDecodeLikeFeeds) {
  std::string stream;
  for (int i = 0; i < 50; ++i) {
    wire::Envelope e;
    e.mutable_error()->set_message(
        std::string(static_cast<std::size_t>(i * 997 % 70000), 'a' + i % 26));
    ASSERT_TRUE(append_frame(e, stream));
  }
  for (std::size_t chunk : {1u, 7u, 4096u, 65536u, 1u << 20}) {
    FrameDecoder decoder;
    wire::Envelope out;
    int decoded = 0;
    std::string_view rest(stream);
    while (!rest.empty()) {
      const std::size_t n = std::min(rest.size(), chunk);
      read_in(decoder, rest.substr(0, n), n);
      rest.remove_prefix(n);
      while (decoder.next(out) == FrameDecoder::Status::kFrame) {
        EXPECT_EQ(out.error().message().size(), static_cast<std::size_t>(decoded * 997 % 70000))
            << chunk;
        ++decoded;
      }
    }
    EXPECT_EQ(decoded, 50) << chunk;
  }
}

TEST(FrameTest, OversizedAnnouncementGetsNoRoomReserved) {
  FrameDecoder decoder(1024);
  const char header[4] = {0x7f, 0, 0, 0};
  read_in(decoder, std::string_view(header, 4), 4);
  EXPECT_LT(decoder.prepare(16).size(), std::size_t{1} << 20);
  wire::Envelope out;
  EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kOversized);
}

}  // namespace
// Reads `bytes` into the decoder through prepare(), at most `chunk` at a time, the way a
// connection does (the space offered may be smaller than `chunk`: an attachment's rest).
void read_any(FrameDecoder& decoder, std::string_view bytes, std::size_t chunk) {
  while (!bytes.empty()) {
    std::span<char> space = decoder.prepare(chunk);
    ASSERT_FALSE(space.empty());
    const std::size_t n = std::min({space.size(), bytes.size(), chunk});
    std::memcpy(space.data(), bytes.data(), n);
    decoder.commit(n);
    bytes.remove_prefix(n);
  }
}

std::string pattern(std::size_t size, unsigned seed) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131 + seed) % 251);
  return s;
}

// A RunTask whose call travels as the frame's attachment.
void append_run_task(std::uint64_t id, const std::string& call, std::string& out) {
  wire::Envelope e;
  e.mutable_run_task()->set_task_id(id);
  ASSERT_TRUE(append_attached_frame(e, call.size(), out));
  out += call;
}

TEST(FrameTest, AttachmentsLandInTheirSlotsSplitAnywhere) {
  std::string stream;
  for (unsigned i = 0; i < 6; ++i) {
    append_run_task(i, pattern(i * 70001, i), stream);
    ASSERT_TRUE(append_frame(heartbeat("between-" + std::to_string(i), i), stream));
  }
  for (std::size_t chunk : {7u, 4096u, 65536u, 1u << 20, 8u << 20}) {
    FrameDecoder decoder;
    wire::Envelope out;
    unsigned tasks = 0, beats = 0;
    std::string_view rest(stream);
    while (!rest.empty()) {
      const std::size_t n = std::min(rest.size(), chunk);
      read_any(decoder, rest.substr(0, n), n);
      rest.remove_prefix(n);
      FrameDecoder::Status status;
      while ((status = decoder.next(out)) == FrameDecoder::Status::kFrame) {
        if (out.has_run_task()) {
          EXPECT_EQ(out.run_task().task_id(), tasks);
          EXPECT_TRUE(out.run_task().call() == pattern(tasks * 70001, tasks)) << chunk;
          ++tasks;
        } else {
          EXPECT_EQ(out.heartbeat().busy_slots(), beats);
          ++beats;
        }
        out.Clear();
      }
      ASSERT_EQ(status, FrameDecoder::Status::kNeedMore) << decoder.error();
    }
    EXPECT_EQ(tasks, 6u) << chunk;
    EXPECT_EQ(beats, 6u) << chunk;
    EXPECT_EQ(decoder.buffered(), 0u);
  }
}

TEST(FrameTest, AttachmentsDecodeFromFeedsOfOneByte) {
  std::string stream;
  append_run_task(7, pattern(3000, 1), stream);
  ASSERT_TRUE(append_frame(heartbeat("after", 2), stream));
  FrameDecoder decoder;
  wire::Envelope out;
  int frames = 0;
  for (char c : stream) {
    decoder.feed(std::string_view(&c, 1));
    while (decoder.next(out) == FrameDecoder::Status::kFrame) {
      if (frames == 0) {
        EXPECT_TRUE(out.run_task().call() == pattern(3000, 1));
      } else {
        EXPECT_EQ(out.heartbeat().server_id(), "after");
      }
      ++frames;
      out.Clear();
    }
  }
  EXPECT_EQ(frames, 2);
}

TEST(FrameTest, AttachmentIsReadIntoItsOwnBufferInOneRead) {
  std::string stream;
  const std::string call = pattern(5u << 20, 3);
  append_run_task(1, call, stream);
  FrameDecoder decoder;
  wire::Envelope out;
  read_any(decoder, std::string_view(stream).substr(0, 1000), 1000);
  ASSERT_EQ(decoder.next(out), FrameDecoder::Status::kNeedMore);
  // The rest of the attachment is offered exactly, so no read runs into the next frame.
  const std::size_t header = kAttachedFrameHeaderSize + (stream.size() - call.size() - 8);
  EXPECT_EQ(decoder.prepare(64).size(), call.size() - (1000 - header));
  read_any(decoder, std::string_view(stream).substr(1000), stream.size());
  ASSERT_EQ(decoder.next(out), FrameDecoder::Status::kFrame);
  EXPECT_TRUE(out.run_task().call() == call);
}

TEST(FrameTest, EveryKindOfPayloadCanBeAttached) {
  std::vector<wire::Envelope> messages(5);
  messages[0].mutable_submit_tasks()->add_tasks()->set_task_id(1);
  messages[1].mutable_assign_tasks()->add_tasks()->set_task_id(2);
  messages[2].mutable_task_results()->add_results()->set_task_id(3);
  messages[3].mutable_run_task()->set_task_id(4);
  messages[4].mutable_task_done()->set_task_id(5);
  std::string stream;
  for (auto& m : messages) {
    ASSERT_NE(attachment_slot(m), nullptr);
    ASSERT_TRUE(append_attached_frame(m, 10, stream));
    stream += "0123456789";
  }
  FrameDecoder decoder;
  decoder.feed(stream);
  for (int i = 0; i < 5; ++i) {
    wire::Envelope out;
    ASSERT_EQ(decoder.next(out), FrameDecoder::Status::kFrame) << i;
    EXPECT_EQ(*attachment_slot(out), "0123456789") << i;
  }
}

TEST(FrameTest, OversizedAttachmentIsRejectedBeforeBuffering) {
  wire::Envelope e;
  e.mutable_run_task()->set_task_id(1);
  std::string bytes;
  EXPECT_FALSE(append_attached_frame(e, 1025, bytes, 1024));
  EXPECT_TRUE(bytes.empty());
  ASSERT_TRUE(append_attached_frame(e, 1025, bytes, 4096));
  FrameDecoder decoder(1024);
  decoder.feed(bytes);
  wire::Envelope out;
  EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kOversized);
  EXPECT_EQ(decoder.announced_size(), 1025u);
  EXPECT_NE(decoder.error().find("oversized attachment"), std::string::npos) << decoder.error();
}

TEST(FrameTest, AttachmentWithoutASlotForItIsRefused) {
  wire::Envelope two_tasks;
  two_tasks.mutable_submit_tasks()->add_tasks()->set_task_id(1);
  two_tasks.mutable_submit_tasks()->add_tasks()->set_task_id(2);
  wire::Envelope full;
  full.mutable_run_task()->set_call("already here");
  for (const wire::Envelope& e : {heartbeat("s", 1), two_tasks, full}) {
    std::string bytes;
    ASSERT_TRUE(append_attached_frame(e, 3, bytes));
    bytes += "abc";
    FrameDecoder decoder;
    decoder.feed(bytes);
    wire::Envelope out;
    EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kBadAttachment);
    EXPECT_NE(decoder.error().find("malformed attachment"), std::string::npos);
  }
}

TEST(FrameTest, PlainFrameLengthNeverReachesTheAttachmentFlag) {
  // An old peer reads a flagged header as a length over 2 GiB: an oversized frame, never a
  // misparse. A decoder limit that high must still not take a body for a flag.
  FrameDecoder decoder(std::size_t{3} << 30);
  decoder.feed(std::string("\x80\x00\x00\x02\x00\x00\x00\x01\x08\x05Z", 11));
  wire::Envelope out;
  EXPECT_EQ(decoder.next(out), FrameDecoder::Status::kBadAttachment);  // request_id only: no slot
}

}  // namespace clupy::common
