#include "store/chunk_check.hpp"

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define CLUPY_CRC32C_X86 1
#endif

namespace clupy::store {
namespace {

constexpr std::uint32_t kCastagnoliReflected = 0x82F63B78u;

struct Table {
  std::uint32_t v[256];
  constexpr Table() : v{} {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? (c >> 1) ^ kCastagnoliReflected : c >> 1;
      v[i] = c;
    }
  }
};
constexpr Table kTable;

std::uint32_t portable_bytes(std::uint32_t crc, const unsigned char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) crc = kTable.v[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc;
}

std::uint32_t portable_word(std::uint32_t crc, std::uint64_t word) {
  unsigned char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(word >> (8 * i));
  return portable_bytes(crc, bytes, 8);
}

std::uint64_t load_le64(const unsigned char* p) {
  std::uint64_t v = 0;
  std::memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

void store_lanes(const std::uint32_t lanes[4], ChunkCheck& out) {
  for (int k = 0; k < 4; ++k) {
    std::uint32_t v = ~lanes[k];
    for (int b = 0; b < 4; ++b) out[4 * k + b] = static_cast<unsigned char>(v >> (8 * b));
  }
}

ChunkCheck check_portable(std::uint64_t index, std::string_view data) {
  std::uint32_t lanes[4];
  for (auto& lane : lanes) lane = portable_word(0xFFFFFFFFu, index);
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t blocks = data.size() / 32;
  for (std::size_t b = 0; b < blocks; ++b, p += 32)
    for (int k = 0; k < 4; ++k) lanes[k] = portable_word(lanes[k], load_le64(p + 8 * k));
  lanes[0] = portable_bytes(lanes[0], p, data.size() % 32);
  ChunkCheck out;
  store_lanes(lanes, out);
  return out;
}

#ifdef CLUPY_CRC32C_X86
__attribute__((target("sse4.2"))) std::uint32_t hw_bytes(std::uint32_t crc, const unsigned char* p,
                                                         std::size_t n) {
  std::uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) c = _mm_crc32_u64(c, load_le64(p));
  auto c32 = static_cast<std::uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = _mm_crc32_u8(c32, *p);
  return c32;
}

__attribute__((target("sse4.2"))) ChunkCheck check_hardware(std::uint64_t index,
                                                            std::string_view data) {
  std::uint64_t l0 = _mm_crc32_u64(0xFFFFFFFFu, index), l1 = l0, l2 = l0, l3 = l0;
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t blocks = data.size() / 32;
  for (std::size_t b = 0; b < blocks; ++b, p += 32) {
    l0 = _mm_crc32_u64(l0, load_le64(p));
    l1 = _mm_crc32_u64(l1, load_le64(p + 8));
    l2 = _mm_crc32_u64(l2, load_le64(p + 16));
    l3 = _mm_crc32_u64(l3, load_le64(p + 24));
  }
  std::uint32_t lanes[4] = {static_cast<std::uint32_t>(l0), static_cast<std::uint32_t>(l1),
                            static_cast<std::uint32_t>(l2), static_cast<std::uint32_t>(l3)};
  lanes[0] = hw_bytes(lanes[0], p, data.size() % 32);
  ChunkCheck out;
  store_lanes(lanes, out);
  return out;
}

const bool kHaveHardware = __builtin_cpu_supports("sse4.2");
#else
constexpr bool kHaveHardware = false;
#endif

}  // namespace

bool crc32c_hardware() { return kHaveHardware; }

std::uint32_t crc32c_update_portable(std::uint32_t crc, std::string_view data) {
  return portable_bytes(crc, reinterpret_cast<const unsigned char*>(data.data()), data.size());
}

std::uint32_t crc32c_update(std::uint32_t crc, std::string_view data) {
#ifdef CLUPY_CRC32C_X86
  if (kHaveHardware)
    return hw_bytes(crc, reinterpret_cast<const unsigned char*>(data.data()), data.size());
#endif
  return crc32c_update_portable(crc, data);
}

ChunkCheck chunk_check_portable(std::uint64_t index, std::string_view data) {
  return check_portable(index, data);
}

ChunkCheck chunk_check(std::uint64_t index, std::string_view data) {
#ifdef CLUPY_CRC32C_X86
  if (kHaveHardware) return check_hardware(index, data);
#endif
  return check_portable(index, data);
}

}  // namespace clupy::store
