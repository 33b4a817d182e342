#include "base/lock_table.h"

#include "os/os.h"

namespace jsmalloc {

namespace {

constexpr size_t kChunkBytes = 64 << 10;  // 1024 locks: one partition needs ~200

constinit SpinLock table_lock;
constinit char* next_free = nullptr;
constinit char* chunk_end = nullptr;
constinit LockTableStats stats;

}  // namespace

PaddedSpinLock* LockTable::Allocate(int n) {
  if (n <= 0) return nullptr;
  const size_t bytes = static_cast<size_t>(n) * sizeof(PaddedSpinLock);
  SpinLockHolder h(&table_lock);
  if (next_free == nullptr || static_cast<size_t>(chunk_end - next_free) < bytes) {
    const size_t page = os::SystemPageSize();
    size_t map = bytes > kChunkBytes ? bytes : kChunkBytes;
    map = (map + page - 1) & ~(page - 1);
    bool wiped = false;
    void* p = os::MapWipeOnFork(map, &wiped);
    if (p == nullptr) return nullptr;
    // The rest of the previous chunk is left unused.
    next_free = static_cast<char*>(p);
    chunk_end = next_free + map;
    stats.bytes += map;
    stats.wiped = stats.wiped && wiped;
  }
  // Fresh anonymous memory reads as zeros, which is a free SpinLock: nothing
  // is written, so locks nobody takes (a machine's CPUs that never run this
  // process: thousands of possible CPUs on some kernels) cost no page.
  static_assert(SpinLock::kZeroIsFree, "the table hands out zeroed memory as free locks");
  PaddedSpinLock* locks = reinterpret_cast<PaddedSpinLock*>(next_free);
  next_free += bytes;
  stats.locks += static_cast<size_t>(n);
  return locks;
}

LockTableStats LockTable::Stats() {
  SpinLockHolder h(&table_lock);
  return stats;
}

}  // namespace jsmalloc
