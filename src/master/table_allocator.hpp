// The allocator of the master's tables that grow with the tasks it holds (hash maps keyed by
// task): arrays of 1 MiB and more are mapped from the kernel and unmapped when freed, whatever
// malloc's settings.
//
// Why: a hash table that grows while a million tasks queue replaces its array by one twice the
// size, again and again. Served by malloc's heap, the old arrays stay in the master's resident
// memory; served by malloc's mmap they go back, but so would every payload buffer of that size,
// and a 4 MiB value that takes fresh pages on each of its copies in the master costs 3x the time
// of one that reuses heap pages (docs/performance.md). With this allocator the tables give their
// memory back and the payloads keep malloc's heap (common::tune_malloc_for_payloads).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <memory>
#include <new>

namespace clupy::master {

template <class T>
class TableAllocator {
 public:
  using value_type = T;
  static constexpr std::size_t kMappedFrom = std::size_t{1} << 20;

  TableAllocator() noexcept = default;
  template <class U>
  TableAllocator(const TableAllocator<U>&) noexcept {}  // NOLINT: rebinding is implicit

  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kMappedFrom) return std::allocator<T>{}.allocate(n);
    void* mapped =
        ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) throw std::bad_alloc();
    return static_cast<T*>(mapped);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kMappedFrom) {
      std::allocator<T>{}.deallocate(p, n);
      return;
    }
    ::munmap(p, bytes);
  }

  template <class U>
  bool operator==(const TableAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace clupy::master
