// The frame decoder against any byte stream, cut into reads in any way, through both of its
// input paths (feed() and prepare()/commit()). What must hold: it never reads or writes out of
// bounds; after a final status (oversized, unparsable, bad attachment) it says why; and a
// stream that encodes frames with append_frame/append_attached_frame decodes back to the same
// messages whatever the cuts.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "clupy.pb.h"
#include "common/batches.hpp"
#include "common/frame.hpp"

namespace {

using clupy::common::FrameDecoder;

// The input: one byte of options (bit 0: a 256-byte frame limit instead of 64 KiB), two bytes
// seeding the cuts, then the stream. Seeds are real frames behind three bytes.
constexpr std::size_t kPrefix = 3;

// Read sizes and input paths drawn from a small generator, so that one input is replayed with the
// same cuts: mostly short reads, now and then everything that is left.
class Cuts {
 public:
  explicit Cuts(std::uint32_t seed) : state_(seed * 2654435761u + 1) {}
  std::size_t next_read(std::size_t left) {
    const std::uint32_t r = step();
    if (r % 8 == 0) return left;
    return 1 + r / 8 % std::min<std::size_t>(left, 64);
  }
  bool use_feed() { return step() % 2 == 0; }

 private:
  std::uint32_t step() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    return state_;
  }
  std::uint32_t state_;
};

// Hands `stream` to `decoder` in reads `cuts` chooses, calling next() after each, and returns
// the messages that came out (serialized). Stops at the first final status.
std::vector<std::string> decode(FrameDecoder& decoder, std::string_view stream, Cuts cuts,
                                FrameDecoder::Status& last) {
  std::vector<std::string> out;
  while (true) {
    clupy::wire::Envelope message;
    last = decoder.next(message);
    if (last == FrameDecoder::Status::kFrame) {
      out.push_back(message.SerializeAsString());
      continue;
    }
    if (last != FrameDecoder::Status::kNeedMore) {
      if (decoder.error().empty()) std::abort();  // a final status always says why
      return out;
    }
    if (stream.empty()) return out;
    const std::size_t read = cuts.next_read(stream.size());
    if (cuts.use_feed()) {
      decoder.feed(stream.substr(0, read));
      stream.remove_prefix(read);
    } else {
      auto room = decoder.prepare(read);
      if (room.empty()) std::abort();  // prepare() always offers room
      const std::size_t written = std::min(room.size(), read);
      std::memcpy(room.data(), stream.data(), written);
      decoder.commit(written);
      stream.remove_prefix(written);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < kPrefix) return 0;
  const std::size_t limit = (data[0] & 1) != 0 ? 256 : (64u << 10);
  const std::uint32_t seed = std::uint32_t{data[1]} << 8 | data[2];
  const std::string_view stream(reinterpret_cast<const char*>(data) + kPrefix, size - kPrefix);

  // 1. The bytes as a stream.
  {
    FrameDecoder decoder(limit);
    FrameDecoder::Status last;
    decode(decoder, stream, Cuts(seed), last);
  }

  // 2. Round trip: when the stream's first frame holds an envelope, that envelope framed twice
  // (with an attachment when it has a slot for one) decodes to the same message twice.
  clupy::wire::Envelope original;
  {
    FrameDecoder first(64u << 10);
    first.feed(stream);
    if (first.next(original) != FrameDecoder::Status::kFrame) return 0;
  }
  std::string framed;
  for (int copy = 0; copy < 2; ++copy) {
    clupy::wire::Envelope body = original;
    std::string* slot = clupy::common::attachment_slot(body);
    if (slot != nullptr && !slot->empty()) {
      const std::string attachment = std::move(*slot);
      slot->clear();
      if (!clupy::common::append_attached_frame(body, attachment.size(), framed, limit)) return 0;
      framed += attachment;
    } else if (!clupy::common::append_frame(original, framed, limit)) {
      return 0;
    }
  }
  FrameDecoder decoder(limit);
  FrameDecoder::Status last;
  const auto messages = decode(decoder, framed, Cuts(seed), last);
  if (last != FrameDecoder::Status::kNeedMore || messages.size() != 2) std::abort();
  const std::string expected = original.SerializeAsString();
  for (const auto& message : messages)
    if (message != expected) std::abort();
  if (decoder.buffered() != 0) std::abort();
  return 0;
}
