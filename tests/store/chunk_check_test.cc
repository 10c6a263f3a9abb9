// The per-chunk check value (crc32c-x4): known CRC32C values, and the hardware path agreeing
// with the portable one on every length around the 8- and 32-byte boundaries.
#include "store/chunk_check.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace clupy::store {
namespace {

std::uint32_t crc32c(std::string_view s) { return ~crc32c_update(0xFFFFFFFFu, s); }

TEST(ChunkCheckTest, Crc32cKnownValues) {
  // The check value of the Castagnoli CRC (RFC 3720, appendix B.4 vectors).
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  EXPECT_EQ(~crc32c_update_portable(0xFFFFFFFFu, "123456789"), 0xE3069283u);
}

TEST(ChunkCheckTest, HardwareMatchesPortable) {
  std::mt19937 rng(7);
  std::string data(4096 + 40, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (std::size_t n = 0; n < 100; ++n) {
    std::string_view part(data.data() + 3, n);  // unaligned on purpose
    EXPECT_EQ(crc32c_update(0xFFFFFFFFu, part), crc32c_update_portable(0xFFFFFFFFu, part)) << n;
    EXPECT_EQ(chunk_check(n, part), chunk_check_portable(n, part)) << n;
  }
  EXPECT_EQ(chunk_check(5, data), chunk_check_portable(5, data));
}

TEST(ChunkCheckTest, LaneLayoutAsDocumented) {
  // 40 bytes: one 32-byte block (lane k gets bytes 8k..8k+7) and 8 bytes more for lane 0.
  std::string data;
  for (int i = 0; i < 40; ++i) data += static_cast<char>('a' + i % 26);
  std::string index(8, '\0');
  index[0] = 3;  // the index as 8 little-endian bytes
  ChunkCheck got = chunk_check(3, data);
  for (int k = 0; k < 4; ++k) {
    std::string lane = index + data.substr(8 * k, 8) + (k == 0 ? data.substr(32) : "");
    std::uint32_t want = crc32c(lane);
    std::uint32_t have = 0;
    for (int b = 0; b < 4; ++b) have |= static_cast<std::uint32_t>(got[4 * k + b]) << (8 * b);
    EXPECT_EQ(have, want) << "lane " << k;
  }
}

TEST(ChunkCheckTest, CatchesChangesAndWrongIndex) {
  std::string data(1 << 20, 'x');
  ChunkCheck good = chunk_check(0, data);
  EXPECT_NE(chunk_check(1, data), good);
  for (std::size_t at : {std::size_t{0}, std::size_t{12345}, data.size() - 1}) {
    std::string bad = data;
    bad[at] ^= 1;
    EXPECT_NE(chunk_check(0, bad), good) << at;
  }
  EXPECT_NE(chunk_check(0, std::string_view(data).substr(1)), good);
}

}  // namespace
}  // namespace clupy::store
