// Keeps a back-end under a memory limit (jsmalloc_set_memory_limit): wraps
// any PageAllocator and checks the bytes that may be resident after each
// growth. Over a soft limit it releases free memory (subreleasing if it must)
// and lets the allocation stand; over a hard limit that releasing cannot
// cure, the allocation fails as out of memory.
//
// Being the one place every span passes through with no allocator lock held,
// it also watches the heap's size for the runtime: SetGrowthHook runs a
// function once the spans in use first reach a size (the background thread
// starts so, on first need).
#ifndef JSMALLOC_BACKEND_MEMORY_LIMITER_H_
#define JSMALLOC_BACKEND_MEMORY_LIMITER_H_

#include <atomic>

#include "backend/page_allocator.h"
#include "probes/jsmalloc_probes.h"

namespace jsmalloc {

class MemoryLimiter final : public PageAllocator {
 public:
  explicit MemoryLimiter(PageAllocator* inner) : inner_(inner) {}

  // Called when releasing free back-end memory is not enough: returns the
  // front- and middle-end caches' objects so their spans can be freed too.
  void SetFlushCaches(void (*fn)()) { flush_caches_ = fn; }

  // fn runs once, on the first span that brings the spans in use to `bytes`
  // or more, on that allocating thread with no allocator lock held (it may
  // start a thread). Setting it again re-arms it.
  void SetGrowthHook(size_t bytes, void (*fn)()) {
    hook_bytes_.store(bytes, std::memory_order_relaxed);
    hook_.store(fn, std::memory_order_release);
  }
  size_t in_use_bytes() const { return in_use_.load(std::memory_order_relaxed); }

  // 0 removes the limit.
  void SetLimit(size_t bytes, bool hard) {
    hard_.store(hard, std::memory_order_relaxed);
    limit_.store(bytes, std::memory_order_release);
  }
  size_t limit() const { return limit_.load(std::memory_order_acquire); }
  bool hard() const { return hard_.load(std::memory_order_relaxed); }
  size_t limit_hits() const { return hits_.load(std::memory_order_relaxed); }
  size_t limit_failures() const { return failures_.load(std::memory_order_relaxed); }
  PageAllocator* inner() const { return inner_; }

  // Applies the limit to a span some part of the back-end (a NUMA partition)
  // just made; returns it, or nullptr after giving it back.
  Span* Admit(Span* span) { return Watch(Check(span)); }

  Span* New(Length n) override { return Watch(Check(inner_->New(n))); }
  Span* NewAligned(Length n, Length align) override { return Watch(Check(inner_->NewAligned(n, align))); }
  void Delete(Span* span) override {
    in_use_.fetch_sub(span->bytes(), std::memory_order_relaxed);
    inner_->Delete(span);
  }
  size_t ReleaseAtLeast(size_t bytes) override { return inner_->ReleaseAtLeast(bytes); }
  BackendStats Stats() override { return inner_->Stats(); }
  size_t BackedBytes() override { return inner_->BackedBytes(); }
  void WaitForDeferredFrees() override { inner_->WaitForDeferredFrees(); }
  void Print(Printer* out) override;
  const char* Name() const override { return inner_->Name(); }
  void LockForFork() override { inner_->LockForFork(); }
  void UnlockAfterFork(bool child) override { inner_->UnlockAfterFork(child); }

 private:
  Span* Watch(Span* span) {
    if (span == nullptr) return nullptr;
    size_t now = in_use_.fetch_add(span->bytes(), std::memory_order_relaxed) + span->bytes();
    // Acquire pairs with SetGrowthHook's release: the threshold read next is
    // the one stored with this hook (ThreadSanitizer caught a relaxed load
    // racing with the re-arm; a plain load on x86 either way).
    if (JSMALLOC_UNLIKELY(hook_.load(std::memory_order_acquire) != nullptr) &&
        now >= hook_bytes_.load(std::memory_order_relaxed)) {
      void (*fn)() = hook_.exchange(nullptr, std::memory_order_acq_rel);
      if (fn != nullptr) fn();
    }
    return span;
  }

  Span* Check(Span* span) {
    size_t limit = this->limit();
    if (span == nullptr || limit == 0) return span;
    size_t backed = inner_->BackedBytes();
    if (backed <= limit) return span;
    hits_.fetch_add(1, std::memory_order_relaxed);
    const size_t requested = span->bytes();
    inner_->ReleaseAtLeast(backed - limit);
    if (inner_->BackedBytes() > limit && flush_caches_ != nullptr) {
      // No allocator lock is held here (callers grow the heap unlocked).
      flush_caches_();
      size_t now = inner_->BackedBytes();
      if (now > limit) inner_->ReleaseAtLeast(now - limit);
    }
    if (hard() && inner_->BackedBytes() > limit) {
      // A free parked behind a collapse may be all that is missing.
      inner_->WaitForDeferredFrees();
      size_t now = inner_->BackedBytes();
      if (now > limit) inner_->ReleaseAtLeast(now - limit);
    }
    if (hard() && inner_->BackedBytes() > limit) {
      failures_.fetch_add(1, std::memory_order_relaxed);
      inner_->Delete(span);
      inner_->ReleaseAtLeast(inner_->BackedBytes() > limit ? inner_->BackedBytes() - limit : 0);
      JSMALLOC_PROBE(memory_limit_hit, limit, requested, 1, backed, 1);
      return nullptr;
    }
    JSMALLOC_PROBE(memory_limit_hit, limit, requested, static_cast<int>(hard()), backed, 0);
    return span;
  }

  PageAllocator* inner_;
  void (*flush_caches_)() = nullptr;
  std::atomic<size_t> limit_{0};
  std::atomic<bool> hard_{false};
  std::atomic<size_t> hits_{0};
  std::atomic<size_t> failures_{0};
  // Spans handed out and not freed through here (NUMA partitions admit
  // theirs through Admit but may free them directly: an estimate).
  std::atomic<size_t> in_use_{0};
  std::atomic<void (*)()> hook_{nullptr};
  std::atomic<size_t> hook_bytes_{0};
};

}  // namespace jsmalloc

#endif  // JSMALLOC_BACKEND_MEMORY_LIMITER_H_
