// glibc malloc settings for processes that move large payloads: the master and server daemons
// and worker processes (never an application's own process, whose allocator is its business).
//
// Why: glibc serves allocations of 128 KiB and more with mmap at first, and, once it raises that
// threshold, gives the top of its heap back to the kernel whenever more than twice the threshold
// is free there. A process that allocates, fills and frees a 1 MiB buffer per task then pays
// for 256 fresh pages per buffer: page faults, zeroing by the kernel, and unmapping. Measured on
// benchmark 7 (docs/performance.md, "Big payloads"): the workers' CPU per task fell from about
// 1.7 ms to 0.5 ms with a fixed threshold and a larger trim threshold.
#pragma once

namespace clupy::common {

// Keeps buffers below 32 MiB on the heap and returns the heap's free top to the
// kernel only past 64 MiB. Does nothing when GLIBC_TUNABLES names a malloc setting (the user's
// choice wins). Memory that must go back to the kernel when freed (the master's task tables,
// replaced by larger ones while tasks queue) is mapped by its owner (master::TableAllocator).
void tune_malloc_for_payloads();

}  // namespace clupy::common
