// Stack traces of sampled allocations, without calling the system malloc.
//
// The allocator's entry points (malloc, operator new, ...) and the sampler's
// own functions are placed in the section "jsmalloc_entry"; the linker
// brackets it with __start_jsmalloc_entry / __stop_jsmalloc_entry. A captured
// stack drops its leading frames while they lie in that section, so it starts
// at the caller of malloc (or new) whichever entry point was used and whether
// or not the entry point reached the sampler by a tail call.
#ifndef JSMALLOC_RUNTIME_STACK_TRACE_H_
#define JSMALLOC_RUNTIME_STACK_TRACE_H_

#include <cstddef>
#include <cstdint>

// Marks a function as part of the allocator's entry path (see above).
#define JSMALLOC_ENTRY_SECTION __attribute__((section("jsmalloc_entry")))

namespace jsmalloc {

// Writes up to `max` return addresses of the calling thread's stack into
// out[], the allocator's own frames removed, innermost first; returns how
// many. Unwinds with the call frame information (.eh_frame) through a cache
// of per-PC rules, falling back to libgcc's _Unwind_Backtrace for frames the
// cache cannot describe; neither allocates through malloc on the paths taken
// for code with PT_GNU_EH_FRAME (the caller still guards against reentry:
// see ThreadState::in_sampler).
int CaptureStack(void** out, int max);

// True if pc lies in the allocator's entry section.
bool InAllocatorEntry(uintptr_t pc);

// The two ways CaptureStack works, for tests: libgcc's _Unwind_Backtrace,
// and (x86-64) a walk that caches each PC's unwind rule, computed from the
// same call frame information; it returns -1 when a frame needs libgcc.
int CaptureStackWithLibgcc(void** out, int max);
int CaptureStackCached(void** out, int max);

// Where the cached walk found the FDEs (call frame information) of the
// PCs it worked out rules for: read from the objects' files, or through
// their mappings by libgcc's _Unwind_Find_FDE (the fallback).
struct FdeReadCounts {
  size_t from_file = 0;
  size_t from_mapping = 0;
};
FdeReadCounts FdeReads();

// Tests: forget every cached rule; choose whether FDEs are read from the
// files (the default) or only through the mappings; and the packed rule of
// one PC each way (*handled false when the file path declines the PC).
void ResetUnwindRulesForTest();
// fork(): the rule cache's lock (Static::PrepareFork takes it after the
// sampler's; a child forked while another thread wrote a rule could
// otherwise never cache one again).
void UnwinderLockForFork();
void UnwinderUnlockAfterFork(bool child);
void SetReadFdesFromFilesForTest(bool on);
uint64_t UnwindRuleFromFileForTest(uintptr_t pc, bool* handled);
uint64_t UnwindRuleThroughMappingForTest(uintptr_t pc);
// The rule of a PC through the cache, worked out without it, and how many
// of the cache's slots are in use (it grows as it fills).
uint64_t UnwindRuleForTest(uintptr_t pc);
uint64_t UnwindRuleUncachedForTest(uintptr_t pc);
size_t UnwindRuleCacheSlotsForTest();

// Where a cached walk starts: a PC in the calling function and the stack
// and frame pointers there. Taking it inline lets a caller (the sampler)
// start the walk at its own frame, not two calls deeper.
struct UnwindStart {
  uintptr_t pc, sp, fp;
};
__attribute__((always_inline)) inline UnwindStart UnwindStartHere() {
  UnwindStart s = {0, 0, 0};
#if defined(__x86_64__)
  asm volatile(
      "leaq 0(%%rip), %0\n\t"
      "movq %%rsp, %1\n\t"
      "movq %%rbp, %2\n\t"
      : "=&r"(s.pc), "=&r"(s.sp), "=&r"(s.fp));
#endif
  return s;
}
// The cached walk from `start` (which must be in a frame still on the
// stack); -1 when a frame needs libgcc, or off x86-64.
int CaptureStackFrom(const UnwindStart& start, void** out, int max);

}  // namespace jsmalloc

#endif  // JSMALLOC_RUNTIME_STACK_TRACE_H_
