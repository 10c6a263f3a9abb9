#include "common/malloc_tuning.hpp"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace clupy::common {

void tune_malloc_for_payloads(int heap_limit) {
  if (const char* tunables = std::getenv("GLIBC_TUNABLES");
      tunables && std::strstr(tunables, "glibc.malloc.") != nullptr)
    return;
  constexpr int kTrimThreshold = 64 << 20;
  ::mallopt(M_MMAP_THRESHOLD, heap_limit);
  ::mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
}

}  // namespace clupy::common
