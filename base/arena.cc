#include "base/arena.h"

#include "os/os.h"

namespace jsmalloc {

namespace {
constexpr size_t kChunk = 1 << 20;
constinit MetadataArena global_arena;
}  // namespace

MetadataArena* GlobalArena() { return &global_arena; }

void* MetadataArena::Alloc(size_t bytes, size_t align) {
  SpinLockHolder h(&lock_);
  uintptr_t cur = reinterpret_cast<uintptr_t>(cur_);
  uintptr_t aligned = (cur + align - 1) & ~(align - 1);
  size_t pad = aligned - cur;
  if (cur_ == nullptr || pad + bytes > left_) {
    size_t want = bytes + align > kChunk ? ((bytes + align + kChunk - 1) & ~(kChunk - 1)) : kChunk;
    void* chunk = os::MapAligned(want, 4096, nullptr);
    if (chunk == nullptr) return nullptr;
    mapped_ += want;
    // The tail of the previous chunk is abandoned; it is at most one object.
    cur_ = static_cast<char*>(chunk);
    left_ = want;
    cur = reinterpret_cast<uintptr_t>(cur_);
    aligned = (cur + align - 1) & ~(align - 1);
    pad = aligned - cur;
  }
  cur_ += pad + bytes;
  left_ -= pad + bytes;
  used_ += bytes;
  return reinterpret_cast<void*>(aligned);
}

void ArenaExhausted() { os::FatalError("out of memory for allocator metadata at", nullptr); }

}  // namespace jsmalloc
