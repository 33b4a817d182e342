// Restartable sequences: the kernel ABI the per-CPU caches stand on. The
// inline half of os/os.h's "rseq / per-CPU" group (os/os.h includes this
// header; the registration functions are declared there): the critical
// sections run on every malloc and free and must be compiled into them.
//
// We share glibc's per-thread registration (glibc >= 2.35 registers every
// thread and exports __rseq_offset/__rseq_size) and register our own area
// per thread only when glibc did not (older glibc, or
// GLIBC_TUNABLES=glibc.pthread.rseq=0). Either way the area sits at a fixed
// offset from the thread pointer, so the critical sections below address it
// as %fs:offset with no per-thread lookup.
//
// Slab layout the critical sections operate on (see caches/per_cpu_slab.h):
// CPU c owns the region base + (c << kPerCpuShift); word i of the region
// (8 bytes) is either a class header or an object slot. The header of class
// cl is word cl: { u16 current, u16 end, u16 begin, u16 max_end }. Objects of
// class cl occupy slots [begin, current); a push may use slots up to end.
#ifndef JSMALLOC_OS_LINUX_RSEQ_H_
#define JSMALLOC_OS_LINUX_RSEQ_H_

#include <cstddef>
#include <cstdint>

namespace jsmalloc::os {

inline constexpr int kPerCpuShift = 19;  // 512 KiB of slots per CPU
#define JSMALLOC_PER_CPU_SHIFT_STR "19"
// The push tests the object's address against a 16-bit mask per class (its
// objects' alignment; a set bit means a pointer into an object, not at its
// start), read from a table this far below the slab's base.
inline constexpr long kSlabAlignMaskOffset = 4096;
#define JSMALLOC_SLAB_ALIGN_MASK_OFFSET_STR "4096"

// Offset of the calling thread's struct rseq from the thread pointer; the
// same for every thread. Valid once RseqInit() (os/os.h) returned a mode
// other than kUnavailable.
extern constinit long g_rseq_offset __attribute__((visibility("hidden")));

// ThreadSanitizer cannot see the ordering a restartable sequence gives: an
// object pushed on a CPU's slab by one thread and popped by another thread on
// that CPU. In TSan builds each push releases and each pop (or drain) acquires
// the object, which is exactly the order the CPU imposes.
#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
inline void SlabObjectAcquired(void* p) {
  if (p != nullptr) __tsan_acquire(p);
}
inline void SlabObjectReleased(void* p) { __tsan_release(p); }
#else
inline void SlabObjectAcquired(void*) {}
inline void SlabObjectReleased(void*) {}
#endif

#if defined(__x86_64__)
#define JSMALLOC_HAVE_RSEQ_SLAB 1

// RseqCurrentCpu as one load, for paths that run on every free (NUMA
// partitions). Only after RseqInit chose a mode other than kUnavailable.
inline int RseqCurrentCpuInline() {
  int32_t cpu;
  asm volatile("movl %%fs:4(%1), %0" : "=r"(cpu) : "r"(g_rseq_offset));
  return cpu;
}

// Every critical section below has the same frame: a 32-byte-aligned
// struct rseq_cs descriptor (label 3) for the range [4, 5) with abort handler
// 6; label 2 arms rseq_cs (using the scratch register named) and is where the
// abort handler jumps back to (the kernel clears rseq_cs on abort), and the
// handler is preceded by the signature the kernel checks. The section's own
// code goes between BEGIN (which ends at label 4) and END (label 5, the
// first instruction after the commit).
#define JSMALLOC_RSEQ_CS_BEGIN(scratch)          \
  ".pushsection __rseq_cs, \"aw?\"\n\t"          \
  ".balign 32\n\t"                                \
  "3:\n\t"                                        \
  ".long 0x0, 0x0\n\t"                            \
  ".quad 4f, (5f - 4f), 6f\n\t"                   \
  ".popsection\n\t"                               \
  "2:\n\t"                                        \
  "leaq 3b(%%rip), " scratch "\n\t"              \
  "movq " scratch ", %%fs:8(%[rseq])\n\t"        \
  "4:\n\t"
#define JSMALLOC_RSEQ_CS_END                       \
  "5:\n\t"                                        \
  ".pushsection __rseq_failure, \"ax?\"\n\t"     \
  ".long 0x53053053\n\t"                          \
  "6:\n\t"                                        \
  "jmp 2b\n\t"                                    \
  ".popsection\n\t"

// The critical sections below are plain asm statements, not `asm goto`: an
// earlier `asm goto` version with an output operand gave wrong pointers with
// GCC 12 in some inlining contexts (TSan builds, and a release build once a
// no-op call was added next to it), which plain asm does not depend on.
// Each one restarts itself on abort: the abort handler jumps back to label 2,
// which arms rseq_cs again (the kernel clears it on abort) and re-reads the
// CPU. Success comes back in the carry/zero flags (flag output operands), so
// the caller branches on them directly.
//
// Pops the top object of class cl on the current CPU into *out; false when
// that class is empty there (or the thread has no rseq registration).
__attribute__((always_inline)) inline bool RseqSlabTryPop(uintptr_t base, size_t cl, void** out) {
  void* result;
  uintptr_t region;
  bool popped;
  // Flags at label 5: "above" (CF=0, ZF=0) only after the successful compare
  // of current with begin; jbe leaves CF=1 or ZF=1 for an empty class, and
  // lea, mov and movw do not touch the flags. An unregistered thread (cpu_id
  // -1 or -2) lands on a region below CPU 0's whose headers are zero: empty
  // (PerCpuSlab::MapMemory), so no sign test is needed.
  asm volatile(
      JSMALLOC_RSEQ_CS_BEGIN("%[region]")
      "movslq %%fs:4(%[rseq]), %[region]\n\t"
      "shlq $" JSMALLOC_PER_CPU_SHIFT_STR ", %[region]\n\t"
      "addq %[base], %[region]\n\t"
      "movzwl (%[region],%[cl],8), %%ecx\n\t"
      "cmpw 4(%[region],%[cl],8), %%cx\n\t"
      "jbe 5f\n\t"
      "movq -8(%[region],%%rcx,8), %[result]\n\t"
      "leal -1(%%rcx), %%ecx\n\t"
      "movw %%cx, (%[region],%[cl],8)\n\t"
      JSMALLOC_RSEQ_CS_END
      // The result in rax, where malloc returns it: no move on the way out.
      // The class in rdi, where the miss path (a tail call) takes it.
      : [result] "=&a"(result), [region] "=&r"(region), "=@cca"(popped)
      : [rseq] "r"(g_rseq_offset), [base] "r"(base), [cl] "D"(cl)
      : "rcx", "memory");
  if (!popped) return false;
  SlabObjectAcquired(result);
  *out = result;
  return true;
}

// Pushes p on class cl of the current CPU; false when full there (or no
// registration).
__attribute__((always_inline)) inline bool RseqSlabPush(uintptr_t base, size_t cl, void* p) {
  SlabObjectReleased(p);
  bool pushed;
  // Flags at label 5: CF=1 only after the successful compare of current with
  // end; jae leaves CF=0 for a full class, and mov, inc and movw do not
  // touch CF. An unregistered thread (cpu_id -1 or -2) lands on a region
  // below CPU 0's whose headers are zero: full (PerCpuSlab::MapMemory).
  //
  // An address that is not a multiple of its class's object alignment (a
  // pointer into an object: p + 8 of any object of 16 bytes or more) fails
  // the testw against the class's mask, which clears CF; the miss path
  // aborts. Two instructions, paid for by the sign tests the regions below
  // CPU 0's made unnecessary here and in the pop.
  //
  // An object equal to the top of the class (a free of what was just freed:
  // the commonest double free) is not pushed: the equal compare leaves CF=0,
  // and the miss path (CpuCacheT::Overflow) checks the top again and aborts.
  // Two instructions, before the capacity compare whose CF is the result.
  // The slot below an empty class is another class's slot or a header (for
  // a CPU never used, whose headers are all zero, the word below the slab:
  // PerCpuSlab::MapMemory keeps it mapped), none of which holds an object of
  // this class, so it cannot match a valid free.
  asm volatile(
      JSMALLOC_RSEQ_CS_BEGIN("%%rax")
      "testw %w[p], -" JSMALLOC_SLAB_ALIGN_MASK_OFFSET_STR "(%[base],%[cl],2)\n\t"
      "jne 5f\n\t"
      "movslq %%fs:4(%[rseq]), %%rax\n\t"
      "shlq $" JSMALLOC_PER_CPU_SHIFT_STR ", %%rax\n\t"
      "addq %[base], %%rax\n\t"
      "movzwl (%%rax,%[cl],8), %%ecx\n\t"
      "cmpq %[p], -8(%%rax,%%rcx,8)\n\t"
      "je 5f\n\t"
      "cmpw 2(%%rax,%[cl],8), %%cx\n\t"
      "jae 5f\n\t"
      "movq %[p], (%%rax,%%rcx,8)\n\t"
      "incl %%ecx\n\t"
      "movw %%cx, (%%rax,%[cl],8)\n\t"
      JSMALLOC_RSEQ_CS_END
      : "=@ccb"(pushed)
      : [rseq] "r"(g_rseq_offset), [base] "r"(base), [cl] "r"(cl), [p] "r"(p)
      : "rax", "rcx", "memory");
  return pushed;
}

// Batch forms, used when a cache misses: one critical section moves up to n
// objects. The copy runs inside the sequence, so an abort leaves nothing
// half-done (the slots above `current` and the caller's buffer are scratch
// until the commit store).
//
// Pops up to n objects of class cl from the current CPU into out[0..k) and
// returns k (0 when empty, stopped or unregistered). out[k-1] was the top.
__attribute__((always_inline)) inline size_t RseqSlabPopBatch(uintptr_t base, size_t cl, void** out,
                                                              size_t n) {
  uintptr_t region, cur, i, k, slots, tmp;
  asm volatile(
      JSMALLOC_RSEQ_CS_BEGIN("%[region]")
      "xorl %k[k], %k[k]\n\t"
      "movslq %%fs:4(%[rseq]), %[region]\n\t"
      "testq %[region], %[region]\n\t"
      "js 5f\n\t"
      "shlq $" JSMALLOC_PER_CPU_SHIFT_STR ", %[region]\n\t"
      "addq %[base], %[region]\n\t"
      "movzwl (%[region],%[cl],8), %k[cur]\n\t"
      "movzwl 4(%[region],%[cl],8), %k[i]\n\t"
      "cmpl %k[i], %k[cur]\n\t"
      "jbe 5f\n\t"  // empty, or stopped (begin = 0xffff)
      "movl %k[cur], %k[tmp]\n\t"
      "subl %k[i], %k[tmp]\n\t"
      "cmpq %[n], %[tmp]\n\t"
      "cmovaq %[n], %[tmp]\n\t"
      "subl %k[tmp], %k[cur]\n\t"  // the new current
      "leaq (%[region],%[cur],8), %[slots]\n\t"
      "xorl %k[i], %k[i]\n\t"
      "7:\n\t"
      "cmpq %[tmp], %[i]\n\t"
      "jae 8f\n\t"
      "movq (%[slots],%[i],8), %[k]\n\t"
      "movq %[k], (%[out],%[i],8)\n\t"
      "incq %[i]\n\t"
      "jmp 7b\n\t"
      "8:\n\t"
      "movq %[tmp], %[k]\n\t"
      "movw %w[cur], (%[region],%[cl],8)\n\t"
      JSMALLOC_RSEQ_CS_END
      : [region] "=&r"(region), [cur] "=&r"(cur), [i] "=&r"(i), [k] "=&r"(k),
        [slots] "=&r"(slots), [tmp] "=&r"(tmp)
      : [rseq] "r"(g_rseq_offset), [base] "r"(base), [cl] "r"(cl), [out] "r"(out), [n] "r"(n)
      : "memory", "cc");
  for (size_t j = 0; j < k; ++j) SlabObjectAcquired(out[j]);
  return k;
}

// Pushes up to n objects in[0..k) on class cl of the current CPU (in[k-1]
// ends on top) and returns k (0 when full, stopped or unregistered).
__attribute__((always_inline)) inline size_t RseqSlabPushBatch(uintptr_t base, size_t cl, void* const* in,
                                                               size_t n) {
  for (size_t j = 0; j < n; ++j) SlabObjectReleased(in[j]);
  uintptr_t region, cur, i, k, slots, tmp;
  asm volatile(
      JSMALLOC_RSEQ_CS_BEGIN("%[region]")
      "xorl %k[k], %k[k]\n\t"
      "movslq %%fs:4(%[rseq]), %[region]\n\t"
      "testq %[region], %[region]\n\t"
      "js 5f\n\t"
      "shlq $" JSMALLOC_PER_CPU_SHIFT_STR ", %[region]\n\t"
      "addq %[base], %[region]\n\t"
      "movzwl (%[region],%[cl],8), %k[cur]\n\t"
      "movzwl 2(%[region],%[cl],8), %k[tmp]\n\t"
      "cmpl %k[tmp], %k[cur]\n\t"
      "jae 5f\n\t"  // full, or stopped (end = 0)
      "subl %k[cur], %k[tmp]\n\t"
      "cmpq %[n], %[tmp]\n\t"
      "cmovaq %[n], %[tmp]\n\t"
      "leaq (%[region],%[cur],8), %[slots]\n\t"
      "xorl %k[i], %k[i]\n\t"
      "7:\n\t"
      "cmpq %[tmp], %[i]\n\t"
      "jae 8f\n\t"
      "movq (%[in],%[i],8), %[k]\n\t"
      "movq %[k], (%[slots],%[i],8)\n\t"
      "incq %[i]\n\t"
      "jmp 7b\n\t"
      "8:\n\t"
      "addl %k[tmp], %k[cur]\n\t"
      "movq %[tmp], %[k]\n\t"
      "movw %w[cur], (%[region],%[cl],8)\n\t"
      JSMALLOC_RSEQ_CS_END
      : [region] "=&r"(region), [cur] "=&r"(cur), [i] "=&r"(i), [k] "=&r"(k),
        [slots] "=&r"(slots), [tmp] "=&r"(tmp)
      : [rseq] "r"(g_rseq_offset), [base] "r"(base), [cl] "r"(cl), [in] "r"(in), [n] "r"(n)
      : "memory", "cc");
  return k;
}
#else
#define JSMALLOC_HAVE_RSEQ_SLAB 0
#endif

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_RSEQ_H_
