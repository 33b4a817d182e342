// Batches madvise calls for the background thread: up to kMaxBatch ranges go
// to the kernel in one io_uring submission (IORING_OP_MADVISE) instead of one
// system call each. Falls back to plain madvise where io_uring is not allowed
// (kernel.io_uring_disabled, seccomp, old kernels). Not thread-safe: its
// user (SystemPageSource) serialises the calls.
//
// Flush returns only once the kernel has done every range it was given:
// its caller hands the memory out again right after. A signal that
// interrupts the wait is resumed from, never taken as the end of the batch.
#ifndef JSMALLOC_OS_LINUX_MADVISE_BATCHER_H_
#define JSMALLOC_OS_LINUX_MADVISE_BATCHER_H_

#include <liburing.h>

#include <cstddef>
#include <cstdint>

namespace jsmalloc::os {

class MadviseBatcher {
 public:
  enum class Mode { kIoUring, kDirect };
  static constexpr int kMaxBatch = 64;  // a request's index fits in the low 8 bits of its user data

  constexpr MadviseBatcher() = default;

  // advice: MADV_DONTNEED or MADV_FREE. allow_io_uring=false forces plain
  // madvise. liburing's probe allocates: call this outside allocator locks.
  bool Init(int advice, bool allow_io_uring);
  Mode mode() const { return mode_; }
  const char* fallback_reason() const { return reason_; }

  void Add(void* p, size_t bytes);
  // Submits everything queued and waits; returns bytes advised successfully.
  size_t Flush();
  void Shutdown();

  size_t batches() const { return batches_; }
  size_t ranges() const { return ranges_; }
  size_t failures() const { return failures_; }
  size_t syscalls() const { return syscalls_; }
  // Waits for completions that a signal interrupted (and that were resumed).
  size_t interrupted_waits() const { return interrupted_waits_; }

  // Tests: make the next Init fail to set up io_uring with this errno.
  static void FailNextSetupForTest(int err) { fail_setup_errno_ = err; }

 private:
  size_t FlushDirect(int from);
  size_t FlushIoUring();
  int SubmitAll();
  void StopRing(const char* reason);  // never enters the ring again; direct madvise from now on

  struct Range {
    void* p;
    size_t bytes;
  };
  Mode mode_ = Mode::kDirect;
  const char* reason_ = "not initialised";
  int advice_ = 0;
  bool ring_ready_ = false;
  struct io_uring ring_ = {};
  Range pending_[kMaxBatch] = {};
  int count_ = 0;
  uint64_t batch_tag_ = 0;  // the batch a completion belongs to (user data above the index)
  size_t batches_ = 0, ranges_ = 0, failures_ = 0, syscalls_ = 0, interrupted_waits_ = 0;
  static inline int fail_setup_errno_ = 0;
};

}  // namespace jsmalloc::os

#endif  // JSMALLOC_OS_LINUX_MADVISE_BATCHER_H_
