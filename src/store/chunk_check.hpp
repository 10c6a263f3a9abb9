// The per-chunk check value of the store ("crc32c-x4", docs/store.md): 128 bits that let a
// reader verify each chunk as it arrives, at memory speed instead of SHA-256 speed.
//
// Four CRC32C (Castagnoli) lanes: every lane starts at 0xFFFFFFFF and is first fed the chunk's
// index as 8 little-endian bytes, so a chunk found under the wrong index fails its check. Then
// the data is taken in 32-byte blocks, lane k fed bytes 8k..8k+7 of each block; the last
// (size % 32) bytes go to lane 0. Each lane is finally inverted and written as 4 little-endian
// bytes, lane 0 first. Four independent lanes keep the CPU's crc32 unit busy (its latency is 3
// cycles, its throughput 1 per cycle). Every error burst of up to 32 bits is caught for certain;
// a random change reaching all four lanes is missed with probability 2^-128, one confined to a
// single lane's bytes with probability 2^-32.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace clupy::store {

inline constexpr std::string_view kChunkCheckName = "crc32c-x4";
inline constexpr std::size_t kChunkCheckBytes = 16;

using ChunkCheck = std::array<unsigned char, kChunkCheckBytes>;

ChunkCheck chunk_check(std::uint64_t index, std::string_view data);

// CRC32C of `data` continuing from `crc` (not inverted: pass 0xFFFFFFFF to start, invert the
// result at the end). Uses SSE 4.2 when the CPU has it; exposed for the tests.
std::uint32_t crc32c_update(std::uint32_t crc, std::string_view data);
// The portable table version, for the tests to compare.
std::uint32_t crc32c_update_portable(std::uint32_t crc, std::string_view data);
// Whether chunk_check uses the hardware crc32 instruction.
bool crc32c_hardware();
// chunk_check computed with the portable code only (for the tests).
ChunkCheck chunk_check_portable(std::uint64_t index, std::string_view data);

}  // namespace clupy::store
