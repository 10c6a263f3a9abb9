#include "common/frame.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "clupy.pb.h"

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
}  // namespace clupy::common
