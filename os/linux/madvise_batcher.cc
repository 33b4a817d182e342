#include "os/os.h"

#include <errno.h>
#include <liburing.h>
#include <sys/mman.h>

#include <new>

namespace jsmalloc::os {

io_uring* MadviseBatcher::Ring() {
  static_assert(sizeof(io_uring) <= sizeof(ring_storage_) && alignof(io_uring) <= 8,
                "the ring storage (os/os.h) must hold liburing's struct io_uring");
  return std::launder(reinterpret_cast<io_uring*>(ring_storage_));
}

bool MadviseBatcher::Init(int advice, bool allow_io_uring) {
  Shutdown();
  advice_ = advice;
  mode_ = Mode::kDirect;
  if (!allow_io_uring) {
    reason_ = "plain madvise (io_uring turned off by JSMALLOC_IO_URING=0)";
    return true;
  }
  int saved = errno;
  int rc;
  if (fail_setup_errno_ != 0) {
    rc = -fail_setup_errno_;
    fail_setup_errno_ = 0;
  } else {
    new (ring_storage_) io_uring();
    rc = io_uring_queue_init(kMaxBatch, Ring(), 0);
  }
  if (rc < 0) {
    reason_ = rc == -EPERM   ? "plain madvise (io_uring not permitted: kernel.io_uring_disabled or seccomp)"
              : rc == -ENOSYS ? "plain madvise (kernel without io_uring)"
                              : "plain madvise (io_uring set-up failed)";
    errno = saved;
    return true;
  }
  io_uring_probe* probe = io_uring_get_probe_ring(Ring());
  bool supported = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_MADVISE);
  if (probe != nullptr) io_uring_free_probe(probe);
  if (!supported) {
    io_uring_queue_exit(Ring());
    reason_ = "plain madvise (kernel lacks IORING_OP_MADVISE)";
    errno = saved;
    return true;
  }
  ring_ready_ = true;
  mode_ = Mode::kIoUring;
  reason_ = "";
  errno = saved;
  return true;
}

void MadviseBatcher::Shutdown() {
  Flush();
  if (ring_ready_) {
    io_uring_queue_exit(Ring());
    ring_ready_ = false;
  }
  mode_ = Mode::kDirect;
}

void MadviseBatcher::Add(void* p, size_t bytes) {
  pending_[count_++] = Range{p, bytes};
  if (count_ == kMaxBatch) Flush();
}

size_t MadviseBatcher::Flush() {
  if (count_ == 0) return 0;
  int saved = errno;
  size_t done = mode_ == Mode::kIoUring ? FlushIoUring() : FlushDirect(0);
  ++batches_;
  ranges_ += static_cast<size_t>(count_);
  count_ = 0;
  errno = saved;
  return done;
}

size_t MadviseBatcher::FlushDirect(int from) {
  size_t done = 0;
  for (int i = from; i < count_; ++i) {
    ++syscalls_;
    if (madvise(pending_[i].p, pending_[i].bytes, advice_) == 0) done += pending_[i].bytes;
    else ++failures_;
  }
  return done;
}

namespace {

// io_uring_enter results after which the same call is simply made again.
bool Retryable(int rc) { return rc == -EINTR || rc == -EAGAIN || rc == -EBUSY; }

}  // namespace

void MadviseBatcher::StopRing(const char* reason) {
  io_uring_queue_exit(Ring());
  ring_ready_ = false;
  mode_ = Mode::kDirect;
  reason_ = reason;
}

// Submits the count_ prepared requests; returns how many the kernel took
// (in order: the first ones). Requests it did not take stay in the ring.
int MadviseBatcher::SubmitAll() {
  static constexpr int kMaxTries = 100;
  int submitted = 0;
  for (int tries = 0; submitted < count_ && tries < kMaxTries; ++tries) {
    ++syscalls_;
    // The first call also waits for the whole batch (one system call in the
    // usual case); a call after a partial submission only submits.
    int rc = tries == 0 ? io_uring_submit_and_wait(Ring(), static_cast<unsigned>(count_)) : io_uring_submit(Ring());
    if (rc > 0) {
      submitted += rc;
    } else if (rc != 0 && !Retryable(rc)) {
      break;
    }
  }
  return submitted;
}

size_t MadviseBatcher::FlushIoUring() {
  // Completions are matched to this batch by a tag, never by count alone: a
  // completion of another batch must not stand in for one of this batch's.
  const uint64_t tag = ++batch_tag_;
  for (int i = 0; i < count_; ++i) {
    io_uring_sqe* sqe = io_uring_get_sqe(Ring());
    if (sqe == nullptr) {
      // Cannot happen (the ring holds kMaxBatch and every batch is reaped):
      // nothing of this batch was submitted, and closing the ring keeps the
      // requests prepared so far from ever running.
      StopRing("plain madvise (io_uring submission queue unexpectedly full)");
      return FlushDirect(0);
    }
    io_uring_prep_madvise(sqe, pending_[i].p, static_cast<off_t>(pending_[i].bytes), advice_);
    io_uring_sqe_set_data64(sqe, (tag << 8) | static_cast<uint64_t>(i));
  }
  const int submitted = SubmitAll();
  size_t done = 0;
  for (int reaped = 0; reaped < submitted;) {
    io_uring_cqe* cqe = nullptr;
    int w = io_uring_peek_cqe(Ring(), &cqe);
    if (w != 0) {
      // Wait for all that is missing at once, not one completion per call.
      ++syscalls_;
      w = io_uring_wait_cqe_nr(Ring(), &cqe, static_cast<unsigned>(submitted - reaped));
    }
    if (w != 0 || cqe == nullptr) {
      // Returning now would leave requests in flight that drop memory after
      // it has been handed out again: resume after a signal, never give up
      // silently.
      if (w == -EINTR) ++interrupted_waits_;
      if (Retryable(w) || w == 0) continue;
      FatalError("cannot wait for io_uring madvise completions (JSMALLOC_IO_URING=0 avoids io_uring); batch at",
                 pending_[0].p);
    }
    const uint64_t data = io_uring_cqe_get_data64(cqe);
    if ((data >> 8) == tag) {
      const uint64_t i = data & 0xff;
      if (cqe->res == 0 && i < static_cast<uint64_t>(count_)) done += pending_[i].bytes;
      else ++failures_;
      ++reaped;
    }
    io_uring_cqe_seen(Ring(), cqe);
  }
  if (submitted < count_) {
    // The kernel would not take the rest: they must never be submitted by a
    // later call (their ranges may be in use by then), so this ring is not
    // entered again; they and every later batch go to madvise directly.
    StopRing("plain madvise (io_uring stopped taking requests)");
    done += FlushDirect(submitted);
  }
  return done;
}

}  // namespace jsmalloc::os
