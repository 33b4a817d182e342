#include "os/linux/madvise_batcher.h"

#include <errno.h>
#include <sys/mman.h>

namespace jsmalloc::os {

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
    rc = io_uring_queue_init(kMaxBatch, &ring_, 0);
  }
  if (rc < 0) {
    reason_ = rc == -EPERM   ? "plain madvise (io_uring not permitted: kernel.io_uring_disabled or seccomp)"
              : rc == -ENOSYS ? "plain madvise (kernel without io_uring)"
                              : "plain madvise (io_uring set-up failed)";
    errno = saved;
    return true;
  }
  io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
  bool supported = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_MADVISE);
  if (probe != nullptr) io_uring_free_probe(probe);
  if (!supported) {
    io_uring_queue_exit(&ring_);
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
    io_uring_queue_exit(&ring_);
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
  size_t done = mode_ == Mode::kIoUring ? FlushIoUring() : FlushDirect();
  ++batches_;
  ranges_ += static_cast<size_t>(count_);
  count_ = 0;
  errno = saved;
  return done;
}

size_t MadviseBatcher::FlushDirect() {
  size_t done = 0;
  for (int i = 0; i < count_; ++i) {
    ++syscalls_;
    if (madvise(pending_[i].p, pending_[i].bytes, advice_) == 0) done += pending_[i].bytes;
    else ++failures_;
  }
  return done;
}

size_t MadviseBatcher::FlushIoUring() {
  for (int i = 0; i < count_; ++i) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return FlushDirect();  // cannot happen: ring holds kMaxBatch
    io_uring_prep_madvise(sqe, pending_[i].p, static_cast<off_t>(pending_[i].bytes), advice_);
    io_uring_sqe_set_data64(sqe, static_cast<uint64_t>(i));
  }
  ++syscalls_;
  int rc = io_uring_submit_and_wait(&ring_, static_cast<unsigned>(count_));
  if (rc < 0) {
    // The ring refused the batch: nothing was submitted, do it directly.
    return FlushDirect();
  }
  size_t done = 0;
  for (int reaped = 0; reaped < count_;) {
    io_uring_cqe* cqe = nullptr;
    int w = io_uring_peek_cqe(&ring_, &cqe);
    if (w != 0 || cqe == nullptr) {
      ++syscalls_;
      w = io_uring_wait_cqe(&ring_, &cqe);
      if (w != 0 || cqe == nullptr) break;
    }
    uint64_t i = io_uring_cqe_get_data64(cqe);
    if (cqe->res == 0 && i < static_cast<uint64_t>(count_)) done += pending_[i].bytes;
    else ++failures_;
    io_uring_cqe_seen(&ring_, cqe);
    ++reaped;
  }
  return done;
}

}  // namespace jsmalloc::os
