#include "backend/partitioned_backend.h"

#include "os/os.h"
#include "probes/jsmalloc_probes.h"

namespace jsmalloc {

void PartitionedBackend::Init(PageAllocator* const* parts, const int* nodes, int n,
                              CurrentPartitionFn current) {
  n_ = n;
  current_ = current;
  for (int p = 0; p < n; ++p) {
    parts_[p] = parts[p];
    nodes_[p] = nodes[p];
  }
}

int PartitionedBackend::Current() const {
  int p = current_ != nullptr ? current_() : 0;
  return p >= 0 && p < n_ ? p : 0;
}

Span* PartitionedBackend::New(Length n) {
  int p = Current();
  ProbeNumaNodeScope node(nodes_[p]);
  return parts_[p]->New(n);
}

Span* PartitionedBackend::NewAligned(Length n, Length align_pages) {
  int p = Current();
  ProbeNumaNodeScope node(nodes_[p]);
  return parts_[p]->NewAligned(n, align_pages);
}

void PartitionedBackend::Delete(Span* span) {
  int p = span->partition;
  if (p >= n_) os::FatalError("span with an unknown NUMA partition at", span->start());
  ProbeNumaNodeScope node(nodes_[p]);
  parts_[p]->Delete(span);
}

size_t PartitionedBackend::ReleaseAtLeast(size_t bytes) {
  // Starting from the calling CPU's partition would favour one node; the
  // order does not matter for the total, so go in partition order.
  size_t done = 0;
  for (int p = 0; p < n_ && done < bytes; ++p) {
    ProbeNumaNodeScope node(nodes_[p]);
    done += parts_[p]->ReleaseAtLeast(bytes - done);
  }
  return done;
}

BackendStats PartitionedBackend::Stats() {
  BackendStats sum;
  for (int p = 0; p < n_; ++p) sum += parts_[p]->Stats();
  return sum;
}

size_t PartitionedBackend::BackedBytes() {
  size_t sum = 0;
  for (int p = 0; p < n_; ++p) sum += parts_[p]->BackedBytes();
  return sum;
}

void PartitionedBackend::Print(Printer* out) {
  for (int p = 0; p < n_; ++p) {
    out->Str("------ NUMA partition ").U(static_cast<size_t>(p)).Str(" (node ")
        .U(static_cast<size_t>(nodes_[p])).Str(") back-end ------\n");
    parts_[p]->Print(out);
  }
}

void PartitionedBackend::LockForFork() {
  for (int p = 0; p < n_; ++p) parts_[p]->LockForFork();
}

void PartitionedBackend::UnlockAfterFork(bool child) {
  for (int p = n_ - 1; p >= 0; --p) parts_[p]->UnlockAfterFork(child);
}

Span* PartitionView::New(Length n) {
  ProbeNumaNodeScope node(node_);
  Span* s = part_->New(n);
  return limiter_ != nullptr ? limiter_->Admit(s) : s;
}

Span* PartitionView::NewAligned(Length n, Length align_pages) {
  ProbeNumaNodeScope node(node_);
  Span* s = part_->NewAligned(n, align_pages);
  return limiter_ != nullptr ? limiter_->Admit(s) : s;
}

void PartitionView::Delete(Span* span) {
  ProbeNumaNodeScope node(node_);
  part_->Delete(span);
}

size_t PartitionView::ReleaseAtLeast(size_t bytes) {
  ProbeNumaNodeScope node(node_);
  return part_->ReleaseAtLeast(bytes);
}

}  // namespace jsmalloc
