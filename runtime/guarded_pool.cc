#include "runtime/guarded_pool.h"
#include "runtime/runtime_locks.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "os/os.h"
#include "base/arena.h"
#include "base/env_options.h"
#include "base/random.h"
#include "base/spinlock.h"
#include "runtime/static_vars.h"

namespace jsmalloc {

constinit uintptr_t g_guarded_begin = 0;
constinit uintptr_t g_guarded_bytes = 0;

namespace {

enum SlotState : uint8_t { kNeverUsed = 0, kLive = 1, kFreed = 2 };

struct Slot {
  uintptr_t ptr;       // the block (0: never used)
  size_t size;         // requested size, at least 1
  size_t alignment;    // as asked (0: malloc's)
  uintptr_t rw_begin;  // the accessible pages while live
  uintptr_t rw_end;
  SampledAllocation* record;
  uint8_t state;
  uint8_t pattern;     // the byte around the block on its pages
  bool right_aligned;
  int alloc_tid;
  int free_tid;
  int alloc_depth;
  int free_depth;
  void* alloc_stack[kGuardedStackDepth];
  void* free_stack[kGuardedStackDepth];
};

struct Pool {
  SpinLock& lock = g_runtime_locks.guarded.lock;  // guards everything below; the fault handler reads without it
  bool tried;     // creation attempted (once)
  bool ok;        // the pool exists
  Slot* slots;
  uint32_t* fifo;  // free slots, least recently freed first (a ring)
  size_t fifo_head;
  size_t fifo_count;
  size_t nslots;
  size_t page;        // system page
  size_t slot_bytes;  // data bytes of a slot (multiple of the page)
  size_t stride;      // slot_bytes + one guard page
  uintptr_t base;     // the reservation: one guard page, then the slots
  size_t total;
  size_t live;
  size_t live_bytes;    // requested bytes of the live blocks
  size_t mapped_bytes;  // their accessible pages
  size_t quarantined;
  uint64_t allocations;
  uint64_t frees;
  uint64_t skipped;
  uint64_t rng;
};

constinit Pool g_pool = {};
constinit std::atomic<uint64_t> g_errors{0};
// Thread id of the thread printing a report (0: none). Other threads that
// fault meanwhile wait for the abort.
constinit std::atomic<int> g_reporter{0};

// The calling thread's id, cached (0: not read yet). After fork() the child's
// thread has another id: GuardedUnlockAfterFork clears it.
__thread int t_tid __attribute__((tls_model("initial-exec"))) = 0;
int ThreadId() {
  int tid = t_tid;
  if (JSMALLOC_UNLIKELY(tid == 0)) t_tid = tid = os::CurrentThreadId();
  return tid;
}

uintptr_t RoundUp(uintptr_t v, uintptr_t a) { return (v + a - 1) & ~(a - 1); }
uintptr_t RoundDown(uintptr_t v, uintptr_t a) { return v & ~(a - 1); }

uintptr_t SlotStart(const Pool& p, size_t i) { return p.base + p.page + i * p.stride; }

// The slot whose data area holds addr, or -1 (a guard page or outside).
long SlotIndexOf(const Pool& p, uintptr_t addr) {
  if (addr < p.base + p.page || addr >= p.base + p.total) return -1;
  uintptr_t rel = addr - p.base - p.page;
  size_t i = rel / p.stride;
  if (i >= p.nslots || rel % p.stride >= p.slot_bytes) return -1;
  return static_cast<long>(i);
}

void WriteLine(Printer& p) { os::WriteStderr(p.data(), p.written()); }

// Called with the pool lock held, once.
bool CreateLocked(Pool& pool) {
  pool.tried = true;
  size_t n = Static::options().guarded_slots;
  if (n == 0) return false;
  if (n > kGuardedMaxSlots) n = kGuardedMaxSlots;
  size_t page = os::SystemPageSize();
  size_t slot_bytes = RoundUp(kGuardedMaxSize, page);
  size_t stride = slot_bytes + page;
  size_t total = page + n * stride;
  Slot* slots = static_cast<Slot*>(GlobalArena()->Alloc(sizeof(Slot) * n, 64));
  uint32_t* fifo = static_cast<uint32_t*>(GlobalArena()->Alloc(sizeof(uint32_t) * n, 64));
  void* mem = slots != nullptr && fifo != nullptr ? os::ReserveInaccessible(total) : nullptr;
  if (mem == nullptr) return false;
  pool.slots = slots;
  pool.fifo = fifo;
  pool.nslots = n;
  pool.page = page;
  pool.slot_bytes = slot_bytes;
  pool.stride = stride;
  pool.base = reinterpret_cast<uintptr_t>(mem);
  pool.total = total;
  for (size_t i = 0; i < n; ++i) fifo[i] = static_cast<uint32_t>(i);
  pool.fifo_head = 0;
  pool.fifo_count = n;
  pool.rng = (os::MonotonicNanos() ^ (pool.base << 7)) | 1;
  // Published before the handler can see a fault in it, and before any
  // block is handed out.
  __atomic_store_n(&g_guarded_begin, pool.base, __ATOMIC_RELEASE);
  __atomic_store_n(&g_guarded_bytes, total, __ATOMIC_RELEASE);
  pool.ok = true;
  return true;
}

bool OnFault(uintptr_t addr, os::FaultAccess access);

// The fault handler, installed once before the pool is made, with no
// allocator lock held: installing it reads /proc/self/exe and calls dladdr,
// which takes the dynamic loader's lock, and under the pool's lock a thread
// in a dlopen()ed library's constructor (holding the loader's lock, waiting
// for the pool's) would have deadlocked with it.
constinit std::atomic<bool> g_handler_tried{false};

void InstallHandlerOnce() {
  if (g_handler_tried.load(std::memory_order_acquire)) return;
  if (!os::InstallFaultHandler(&OnFault)) {
    // Without the handler a fault would still end the process, only without
    // a report; guard anyway, and say so (once: InstallFaultHandler answers
    // every later call from its own state).
    bool expected = false;
    if (g_handler_tried.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
      static const char kMsg[] =
          "jsmalloc: could not install the SIGSEGV handler for guarded sampling; faults will not be reported\n";
      os::WriteStderr(kMsg, sizeof(kMsg) - 1);
    }
    return;
  }
  g_handler_tried.store(true, std::memory_order_release);
}

void CreateOrWarn(Pool& pool) {
  if (CreateLocked(pool)) return;
  if (Static::options().guarded_slots == 0) return;  // JSMALLOC_GUARDED_SLOTS=0: off, as asked
  static const char kMsg[] =
      "jsmalloc: JSMALLOC_GUARDED_RATE is set but the guarded pool could not be reserved; guarded sampling is off\n";
  os::WriteStderr(kMsg, sizeof(kMsg) - 1);
}

void FifoPush(Pool& pool, uint32_t i) {
  pool.fifo[(pool.fifo_head + pool.fifo_count) % pool.nslots] = i;
  ++pool.fifo_count;
}

uint32_t FifoPop(Pool& pool) {
  uint32_t i = pool.fifo[pool.fifo_head];
  pool.fifo_head = (pool.fifo_head + 1) % pool.nslots;
  --pool.fifo_count;
  return i;
}

// ---- Reports ----------------------------------------------------------------------

enum class ErrorKind {
  kUseAfterFree,
  kBufferOverflow,
  kBufferUnderflow,
  kUnknown,
  kDoubleFree,
  kInvalidFree,
  kInvalidPointer,     // malloc_usable_size of a pointer that is not a live block
  kOverflowAtFree,     // the pattern after the block was overwritten
  kUnderflowAtFree,    // the pattern before the block was overwritten
};

const char* KindName(ErrorKind k) {
  switch (k) {
    case ErrorKind::kUseAfterFree: return "use-after-free";
    case ErrorKind::kBufferOverflow: return "buffer overflow";
    case ErrorKind::kBufferUnderflow: return "buffer underflow";
    case ErrorKind::kDoubleFree: return "double free";
    case ErrorKind::kInvalidFree: return "invalid free";
    case ErrorKind::kInvalidPointer: return "invalid pointer passed to malloc_usable_size";
    case ErrorKind::kOverflowAtFree: return "buffer overflow (found at free)";
    case ErrorKind::kUnderflowAtFree: return "buffer underflow (found at free)";
    case ErrorKind::kUnknown: break;
  }
  return "unknown error";
}

void PrintStack(const char* title, int tid, void* const* stack, int depth) {
  char buf[640];
  {
    Printer p(buf, sizeof(buf));
    p.Str("jsmalloc: ").Str(title);
    if (tid > 0) p.Str(" by thread ").U(static_cast<uint64_t>(tid));
    p.Str(depth > 0 ? " at:\n" : ": (no stack)\n");
    WriteLine(p);
  }
  for (int i = 0; i < depth; ++i) {
    uintptr_t pc = reinterpret_cast<uintptr_t>(stack[i]);
    Printer p(buf, sizeof(buf));
    p.Str("    #").U(static_cast<uint64_t>(i)).Char(' ').Hex(pc);
    os::PcInfo info;
    // A return address: the call is the byte before it.
    if (pc != 0 && os::DescribePc(pc - 1, &info)) {
      if (info.symbol != nullptr) {
        p.Str(" in ").Str(info.symbol).Char('+').Hex(pc - info.symbol_addr);
      }
      p.Str(" (").Str(info.module).Char('+').Hex(pc - info.module_base).Char(')');
    }
    p.Char('\n');
    WriteLine(p);
  }
}

// Where addr lies relative to the block, in AddressSanitizer's words ("0
// bytes to the right of" is the first byte past the end).
void DescribeOffset(Printer& p, uintptr_t addr, const Slot& s) {
  if (addr < s.ptr) {
    p.U(s.ptr - addr).Str(" bytes to the left of");
  } else if (addr >= s.ptr + s.size) {
    p.U(addr - (s.ptr + s.size)).Str(" bytes to the right of");
  } else {
    p.U(addr - s.ptr).Str(" bytes inside");
  }
}

// Makes the calling thread the one that reports; a thread that finds
// another one reporting waits for its abort.
void ClaimReporter() {
  const int me = ThreadId();
  int expected = 0;
  if (!g_reporter.compare_exchange_strong(expected, me) && expected != me) os::SleepForever();
}

// Prints the report and aborts. `slot` may be null (no block explains it);
// free_stack/free_depth: the stack of the free that found the error (double
// and invalid frees, patterns found broken at free).
[[noreturn]] void Report(ErrorKind kind, uintptr_t addr, os::FaultAccess access, const Slot* slot,
                         void* const* free_stack, int free_depth, int free_tid) {
  ClaimReporter();
  g_errors.fetch_add(1, std::memory_order_relaxed);
  char buf[640];
  {
    Printer p(buf, sizeof(buf));
    p.Str("jsmalloc: guarded sampling: ").Str(KindName(kind));
    if (access == os::FaultAccess::kRead) p.Str(" (read)");
    else if (access == os::FaultAccess::kWrite) p.Str(" (write)");
    p.Str(" at address ").Hex(addr).Char('\n');
    WriteLine(p);
  }
  if (slot != nullptr && slot->state != kNeverUsed) {
    Printer p(buf, sizeof(buf));
    p.Str("jsmalloc: the address is ");
    DescribeOffset(p, addr, *slot);
    p.Str(" a ").U(slot->size).Str("-byte block at ").Hex(slot->ptr)
        .Str(slot->state == kLive ? " (live" : " (freed")
        .Str(slot->right_aligned ? ", right-aligned against the guard page after it)\n"
                                 : ", left-aligned against the guard page before it)\n");
    WriteLine(p);
    PrintStack("allocated", slot->alloc_tid, slot->alloc_stack, slot->alloc_depth);
    if (slot->state == kFreed) {
      PrintStack(kind == ErrorKind::kDoubleFree ? "first freed" : "freed", slot->free_tid, slot->free_stack,
                 slot->free_depth);
    }
  } else {
    Printer p(buf, sizeof(buf));
    p.Str("jsmalloc: no guarded block is near this address (pool ").Hex(g_pool.base).Str("-")
        .Hex(g_pool.base + g_pool.total).Str(")\n");
    WriteLine(p);
  }
  if (free_stack != nullptr) {
    const char* title = kind == ErrorKind::kDoubleFree                                          ? "freed again"
                        : kind == ErrorKind::kOverflowAtFree || kind == ErrorKind::kUnderflowAtFree ? "freed"
                                                                                               : "called";
    PrintStack(title, free_tid, free_stack, free_depth);
  }
  abort();
}

// ---- The fault handler ---------------------------------------------------------

// Runs in the signal handler: reads the slots without the lock.
bool OnFault(uintptr_t addr, os::FaultAccess access) {
  if (!InGuardedPool(reinterpret_cast<void*>(addr))) return false;
  const Pool& pool = g_pool;
  long i = SlotIndexOf(pool, addr);
  const Slot* slot = nullptr;
  ErrorKind kind = ErrorKind::kUnknown;
  if (i >= 0) {
    // In a slot's data area, outside its accessible pages.
    slot = &pool.slots[i];
    if (slot->state == kFreed) kind = ErrorKind::kUseAfterFree;
    else if (slot->state == kLive && addr >= slot->ptr + slot->size) kind = ErrorKind::kBufferOverflow;
    else if (slot->state == kLive && addr < slot->ptr) kind = ErrorKind::kBufferUnderflow;
  } else {
    // A guard page: blame the nearer of the blocks on either side (the
    // block before it overflowed, or the block after it underflowed).
    uintptr_t rel = addr - pool.base;
    long after = rel < pool.page ? 0 : static_cast<long>((rel - pool.page) / pool.stride) + 1;
    long before = after - 1;
    const Slot* left = before >= 0 && pool.slots[before].state != kNeverUsed ? &pool.slots[before] : nullptr;
    const Slot* right = after < static_cast<long>(pool.nslots) && pool.slots[after].state != kNeverUsed
                            ? &pool.slots[after]
                            : nullptr;
    uintptr_t dl = left != nullptr ? addr - (left->ptr + left->size) : ~uintptr_t{0};
    uintptr_t dr = right != nullptr ? right->ptr - addr : ~uintptr_t{0};
    if (left != nullptr && dl <= dr) {
      slot = left;
      kind = ErrorKind::kBufferOverflow;
    } else if (right != nullptr) {
      slot = right;
      kind = ErrorKind::kBufferUnderflow;
    }
  }
  // A copy: another thread may reuse the slot while we print.
  ClaimReporter();
  static Slot copy;
  if (slot != nullptr) {
    memcpy(&copy, slot, sizeof(copy));
    slot = &copy;
  }
  Report(kind, addr, access, slot, nullptr, 0, 0);
}

// ---- Patterns around a block -------------------------------------------------------

// The bytes of the block's pages before and after it hold `pattern`.
void FillPattern(const Slot& s) {
  memset(reinterpret_cast<void*>(s.rw_begin), s.pattern, s.ptr - s.rw_begin);
  memset(reinterpret_cast<void*>(s.ptr + s.size), s.pattern, s.rw_end - (s.ptr + s.size));
}

uint8_t ByteAt(uintptr_t a) { return *reinterpret_cast<const uint8_t*>(a); }
uint64_t WordAt(uintptr_t a) {
  uint64_t w;
  memcpy(&w, reinterpret_cast<const void*>(a), sizeof(w));
  return w;
}

// The lowest address in [a, end) that does not hold `pat`, or 0. Eight bytes
// at a time: up to a page is checked on every free.
uintptr_t FirstMismatch(uintptr_t a, uintptr_t end, uint8_t pat) {
  const uint64_t w = pat * 0x0101010101010101ull;
  for (; a < end && (a & 7) != 0; ++a) {
    if (ByteAt(a) != pat) return a;
  }
  while (a + 8 <= end && WordAt(a) == w) a += 8;
  for (; a < end; ++a) {
    if (ByteAt(a) != pat) return a;
  }
  return 0;
}

// The highest address in [begin, a) that does not hold `pat`, or 0.
uintptr_t LastMismatch(uintptr_t begin, uintptr_t a, uint8_t pat) {
  const uint64_t w = pat * 0x0101010101010101ull;
  for (; a > begin && (a & 7) != 0; --a) {
    if (ByteAt(a - 1) != pat) return a - 1;
  }
  while (a >= begin + 8 && WordAt(a - 8) == w) a -= 8;
  for (; a > begin; --a) {
    if (ByteAt(a - 1) != pat) return a - 1;
  }
  return 0;
}

// The overwritten pattern byte nearest to the block (after it first), or 0.
uintptr_t BrokenPattern(const Slot& s, bool* after) {
  uintptr_t a = FirstMismatch(s.ptr + s.size, s.rw_end, s.pattern);
  if (a != 0) {
    *after = true;
    return a;
  }
  *after = false;
  return LastMismatch(s.rw_begin, s.ptr, s.pattern);
}

// ---- Free stacks -------------------------------------------------------------------

// The free stack from the caller's frame (`here`), which it drops along with
// the allocator's entry points. With libgcc's walk (the fallback) the first
// frame recorded is the return into that caller (GuardedDeallocate is in the
// entry section, so libgcc skips it): dropped too.
JSMALLOC_ENTRY_SECTION int CaptureFreeStack(const UnwindStart* here, void** out) {
  int depth = here != nullptr ? CaptureStackFrom(*here, out, kGuardedStackDepth) : -1;
  if (depth >= 0) return depth;
  depth = CaptureStackWithLibgcc(out, kGuardedStackDepth);
  int skip = depth > 0 ? 1 : 0;
  while (skip < depth && InAllocatorEntry(reinterpret_cast<uintptr_t>(out[skip]) - 1)) ++skip;
  for (int i = skip; i < depth; ++i) out[i - skip] = out[i];
  return depth - skip;
}

// A stack captured below an entry point (malloc_usable_size): drops the
// frames up to the last one in the allocator's entry section among the first
// few, so that it starts at the entry point's caller.
int TrimToEntryCaller(void** out, int depth) {
  int cut = -1;
  for (int i = 0; i < depth && i < 6; ++i) {
    if (InAllocatorEntry(reinterpret_cast<uintptr_t>(out[i]) - 1)) cut = i;
  }
  if (cut < 0) return depth;
  for (int i = cut + 1; i < depth; ++i) out[i - cut - 1] = out[i];
  return depth - cut - 1;
}

}  // namespace

// ---- Allocation -------------------------------------------------------------------

void* GuardedAllocate(size_t size, size_t alignment, void* const* stack, int depth) {
  Pool& pool = g_pool;
  size_t n = size == 0 ? 1 : size;
  // malloc's alignment for this size, as a size class would give it (8 for
  // the 8-byte class, 16 above); an explicit alignment may ask for more.
  size_t align = n <= 8 ? 8 : kMinAlign;
  if (alignment > align) align = alignment;
  if (JSMALLOC_UNLIKELY(!g_handler_tried.load(std::memory_order_acquire))) InstallHandlerOnce();
  SpinLockHolder h(&pool.lock);
  if (JSMALLOC_UNLIKELY(!pool.tried)) CreateOrWarn(pool);
  if (!pool.ok) return nullptr;
  if (n > pool.slot_bytes || pool.fifo_count == 0) {
    ++pool.skipped;
    return nullptr;
  }
  // The slot at the head of the FIFO (the least recently freed one), and
  // both placements in it.
  const uint32_t i = pool.fifo[pool.fifo_head];
  const uintptr_t start = SlotStart(pool, i);
  const uintptr_t end = start + pool.slot_bytes;
  const uintptr_t right = RoundDown(end - n, align);
  const uintptr_t left = RoundUp(start, align);
  const bool right_ok = right >= start;
  const bool left_ok = left >= start && left <= end - n;
  if (!right_ok && !left_ok) {  // an alignment larger than a slot allows
    ++pool.skipped;
    return nullptr;
  }
  bool use_right = (NextRandom(&pool.rng) >> 63) != 0;
  if (use_right ? !right_ok : !left_ok) use_right = !use_right;
  const uintptr_t ptr = use_right ? right : left;
  const uintptr_t rw_begin = RoundDown(ptr, pool.page);
  const uintptr_t rw_end = RoundUp(ptr + n, pool.page);
  if (!os::MakeAccessible(reinterpret_cast<void*>(rw_begin), rw_end - rw_begin)) {
    ++pool.skipped;
    return nullptr;
  }
  FifoPop(pool);
  Slot& s = pool.slots[i];
  if (s.state == kFreed) --pool.quarantined;
  s.ptr = ptr;
  s.size = n;
  s.alignment = alignment;
  s.rw_begin = rw_begin;
  s.rw_end = rw_end;
  s.record = nullptr;
  s.right_aligned = use_right;
  // Never 0 (fresh pages read as 0) and different from block to block.
  s.pattern = static_cast<uint8_t>(0x80 | ((ptr >> 4) ^ (pool.allocations * 37)));
  s.alloc_tid = ThreadId();
  s.free_tid = 0;
  if (depth > kGuardedStackDepth) depth = kGuardedStackDepth;
  s.alloc_depth = depth > 0 ? depth : 0;
  if (depth > 0) memcpy(s.alloc_stack, stack, sizeof(void*) * static_cast<size_t>(depth));
  s.free_depth = 0;
  s.state = kLive;
  FillPattern(s);
  ++pool.live;
  pool.live_bytes += n;
  pool.mapped_bytes += rw_end - rw_begin;
  ++pool.allocations;
  return reinterpret_cast<void*>(ptr);
}

void GuardedSetRecord(void* p, SampledAllocation* record) {
  long i = SlotIndexOf(g_pool, reinterpret_cast<uintptr_t>(p));
  if (i >= 0) g_pool.slots[i].record = record;
}

void GuardedAbandon(void* p) {
  Pool& pool = g_pool;
  SpinLockHolder h(&pool.lock);
  long i = SlotIndexOf(pool, reinterpret_cast<uintptr_t>(p));
  if (i < 0) return;
  Slot& s = pool.slots[i];
  os::MakeInaccessible(reinterpret_cast<void*>(s.rw_begin), s.rw_end - s.rw_begin);
  s.state = kNeverUsed;
  s.ptr = 0;
  s.record = nullptr;
  --pool.live;
  pool.live_bytes -= s.size;
  pool.mapped_bytes -= s.rw_end - s.rw_begin;
  --pool.allocations;
  FifoPush(pool, static_cast<uint32_t>(i));
}

// ---- Free and size queries ----------------------------------------------------------

JSMALLOC_ENTRY_SECTION __attribute__((noinline)) void GuardedDeallocate(void* p, const UnwindStart* here) {
  void* stack[kGuardedStackDepth];
  int depth = CaptureFreeStack(here, stack);
  const int tid = ThreadId();
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  Pool& pool = g_pool;
  static Slot copy;  // for a report (the process ends then)
  pool.lock.Lock();
  long i = SlotIndexOf(pool, addr);
  Slot* s = i >= 0 ? &pool.slots[i] : nullptr;
  if (s == nullptr || s->state != kLive || s->ptr != addr) {
    ErrorKind kind = s != nullptr && s->state == kFreed && s->ptr == addr ? ErrorKind::kDoubleFree
                                                                          : ErrorKind::kInvalidFree;
    ClaimReporter();
    if (s != nullptr) memcpy(&copy, s, sizeof(copy));
    pool.lock.Unlock();
    Report(kind, addr, os::FaultAccess::kUnknown, s != nullptr ? &copy : nullptr, stack, depth, tid);
  }
  bool after = false;
  uintptr_t broken = BrokenPattern(*s, &after);
  if (broken != 0) {
    ClaimReporter();
    memcpy(&copy, s, sizeof(copy));
    pool.lock.Unlock();
    Report(after ? ErrorKind::kOverflowAtFree : ErrorKind::kUnderflowAtFree, broken, os::FaultAccess::kUnknown,
           &copy, stack, depth, tid);
  }
  os::MakeInaccessible(reinterpret_cast<void*>(s->rw_begin), s->rw_end - s->rw_begin);
  s->state = kFreed;
  s->free_tid = tid;
  s->free_depth = depth;
  memcpy(s->free_stack, stack, sizeof(void*) * static_cast<size_t>(depth));
  SampledAllocation* record = s->record;
  s->record = nullptr;
  FifoPush(pool, static_cast<uint32_t>(i));
  --pool.live;
  pool.live_bytes -= s->size;
  pool.mapped_bytes -= s->rw_end - s->rw_begin;
  ++pool.quarantined;
  ++pool.frees;
  pool.lock.Unlock();
  if (record != nullptr) FreeGuardedSample(record, p);
}

size_t GuardedUsableSize(const void* p) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  long i = SlotIndexOf(g_pool, addr);
  const Slot* s = i >= 0 ? &g_pool.slots[i] : nullptr;
  if (s != nullptr && s->state == kLive && s->ptr == addr) return s->size;
  ClaimReporter();
  static Slot copy;
  if (s != nullptr) memcpy(&copy, s, sizeof(copy));
  void* stack[kGuardedStackDepth];
  int depth = TrimToEntryCaller(stack, CaptureStack(stack, kGuardedStackDepth));
  Report(s != nullptr && s->state == kFreed && s->ptr == addr ? ErrorKind::kUseAfterFree
                                                               : ErrorKind::kInvalidPointer,
         addr, os::FaultAccess::kUnknown, s != nullptr ? &copy : nullptr, stack, depth, ThreadId());
}

size_t GuardedOwnedSize(const void* p) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  long i = SlotIndexOf(g_pool, addr);
  if (i < 0) return 0;
  const Slot& s = g_pool.slots[i];
  if (s.state != kLive || addr < s.ptr || addr >= s.ptr + s.size) return 0;
  return s.size;
}

// ---- Stats --------------------------------------------------------------------------

GuardedStats GetGuardedStats() {
  GuardedStats st = {};
  st.rate = Static::inited() ? Static::options().guarded_rate : 0;
  st.max_size = kGuardedMaxSize;
  Pool& pool = g_pool;
  SpinLockHolder h(&pool.lock);
  if (pool.ok) {
    st.slots = pool.nslots;
    st.pool_bytes = pool.total;
  }
  st.slots_in_use = pool.live;
  st.live_bytes = pool.live_bytes;
  st.mapped_bytes = pool.mapped_bytes;
  st.slots_quarantined = pool.quarantined;
  st.allocations_total = pool.allocations;
  st.frees_total = pool.frees;
  st.skipped_total = pool.skipped;
  st.errors_reported = g_errors.load(std::memory_order_relaxed);
  return st;
}

void PrintGuardedSection(Printer* out) {
  GuardedStats s = GetGuardedStats();
  if (s.rate == 0) {
    out->Str("Guarded sampling: off (JSMALLOC_GUARDED_RATE=0)\n");
    return;
  }
  out->Str("Guarded sampling: one in ").U(s.rate).Str(" samples up to ").U(s.max_size >> 10)
      .Str(" KiB;\n  ");
  if (s.slots == 0) {
    out->Str("pool not created yet");
  } else {
    out->U(s.slots).Str(" slots (").MiB(s.pool_bytes).Str(" MiB reserved), ").U(s.slots_in_use)
        .Str(" in use (").U(s.live_bytes).Str(" bytes on ").U(s.mapped_bytes >> 10).Str(" KiB of pages), ")
        .U(s.slots_quarantined).Str(" quarantined");
  }
  out->Str(";\n  ").U(s.allocations_total).Str(" guarded allocations, ").U(s.skipped_total)
      .Str(" skipped, ").U(s.errors_reported).Str(" errors reported\n");
}

namespace {
const char* const kPropertyNames[] = {
    "jsmalloc.guarded.rate",
    "jsmalloc.guarded.slots",
    "jsmalloc.guarded.slots_in_use",
    "jsmalloc.guarded.slots_quarantined",
    "jsmalloc.guarded.live_bytes",
    "jsmalloc.guarded.mapped_bytes",
    "jsmalloc.guarded.max_size",
    "jsmalloc.guarded.pool_bytes",
    "jsmalloc.guarded.allocations_total",
    "jsmalloc.guarded.frees_total",
    "jsmalloc.guarded.skipped_total",
    "jsmalloc.guarded.errors_reported",
};
constexpr size_t kNumProperties = sizeof(kPropertyNames) / sizeof(kPropertyNames[0]);
}  // namespace

bool GetGuardedProperty(const char* name, size_t* value) {
  size_t i = 0;
  while (i < kNumProperties && strcmp(name, kPropertyNames[i]) != 0) ++i;
  if (i == kNumProperties) return false;
  GuardedStats s = GetGuardedStats();
  const size_t values[kNumProperties] = {
      s.rate, s.slots, s.slots_in_use, s.slots_quarantined, s.live_bytes, s.mapped_bytes, s.max_size,
      s.pool_bytes,
      static_cast<size_t>(s.allocations_total), static_cast<size_t>(s.frees_total),
      static_cast<size_t>(s.skipped_total), static_cast<size_t>(s.errors_reported),
  };
  *value = values[i];
  return true;
}

size_t GuardedPropertyNames(const char** names, size_t max) {
  for (size_t i = 0; i < kNumProperties && i < max; ++i) names[i] = kPropertyNames[i];
  return kNumProperties;
}

// ---- fork() ---------------------------------------------------------------------------

void GuardedLockForFork() { g_pool.lock.Lock(); }

void GuardedUnlockAfterFork(bool child) {
  if (child) {
    t_tid = 0;  // the child's thread has an id of its own
    g_pool.lock.ResetAfterFork();
  }
  else g_pool.lock.Unlock();
}

}  // namespace jsmalloc
