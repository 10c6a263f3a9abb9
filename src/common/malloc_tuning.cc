#include "common/malloc_tuning.hpp"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace clupy::common {

void tune_malloc_for_payloads() {
  if (const char* tunables = std::getenv("GLIBC_TUNABLES");
      tunables && std::strstr(tunables, "glibc.malloc.") != nullptr)
    return;
  constexpr int kHeapLimit = 32 << 20;
  constexpr int kTrimThreshold = 64 << 20;
  ::mallopt(M_MMAP_THRESHOLD, kHeapLimit);
  ::mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
}

}  // namespace clupy::common
