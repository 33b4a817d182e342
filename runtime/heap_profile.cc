#include "runtime/heap_profile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>  // rename()
#include <unistd.h>

#include <cstring>

#include "os/os.h"
#include "base/internal_printer.h"

namespace jsmalloc {

namespace {

size_t RoundToSystemPages(size_t bytes) {
  size_t page = os::SystemPageSize();
  return (bytes + page - 1) & ~(page - 1);
}

void* MapZeroed(size_t bytes) { return os::MapAligned(RoundToSystemPages(bytes), os::SystemPageSize(), nullptr); }

void UnmapBytes(void* p, size_t bytes) {
  if (p != nullptr) os::Unmap(p, RoundToSystemPages(bytes));
}

uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

bool SameKey(const ProfileTable::Entry& e, uint64_t hash, void* const* stack, int depth, size_t size) {
  return e.hash == hash && e.size == size && e.depth == depth &&
         memcmp(e.stack, stack, sizeof(void*) * static_cast<size_t>(depth)) == 0;
}

}  // namespace

uint64_t ProfileTable::Hash(void* const* stack, int depth, size_t size) {
  uint64_t h = Mix(0x243f6a8885a308d3ull, size);
  for (int i = 0; i < depth; ++i) h = Mix(h, reinterpret_cast<uintptr_t>(stack[i]));
  h ^= h >> 29;
  return h != 0 ? h : 1;
}

bool ProfileTable::Grow(size_t min_capacity) {
  size_t cap = capacity_ != 0 ? capacity_ : 64;
  while (cap < min_capacity) cap *= 2;
  if (cap == capacity_) return true;
  Entry* slots = static_cast<Entry*>(MapZeroed(cap * sizeof(Entry)));
  if (slots == nullptr) return false;
  for (size_t i = 0; i < capacity_; ++i) {
    const Entry& e = slots_[i];
    if (e.hash == 0) continue;
    size_t j = e.hash & (cap - 1);
    while (slots[j].hash != 0) j = (j + 1) & (cap - 1);
    // Only the used part of the stack is copied; the rest stays zero.
    slots[j].hash = e.hash;
    slots[j].size = e.size;
    slots[j].count = e.count;
    slots[j].depth = e.depth;
    memcpy(slots[j].stack, e.stack, sizeof(void*) * static_cast<size_t>(e.depth));
  }
  UnmapBytes(slots_, capacity_ * sizeof(Entry));
  slots_ = slots;
  capacity_ = cap;
  return true;
}

bool ProfileTable::Reserve(size_t n) {
  // At most half full.
  return n * 2 <= capacity_ || Grow(n * 2);
}

bool ProfileTable::Add(void* const* stack, int depth, size_t size, size_t count) {
  if (depth > kMaxStackDepth) depth = kMaxStackDepth;
  if (depth < 0) depth = 0;
  if (!Reserve(used_ + 1)) return false;
  uint64_t hash = Hash(stack, depth, size);
  size_t j = hash & (capacity_ - 1);
  while (slots_[j].hash != 0) {
    if (SameKey(slots_[j], hash, stack, depth, size)) {
      slots_[j].count += count;
      return true;
    }
    j = (j + 1) & (capacity_ - 1);
  }
  Entry& e = slots_[j];
  e.hash = hash;
  e.size = size;
  e.count = count;
  e.depth = depth;
  memcpy(e.stack, stack, sizeof(void*) * static_cast<size_t>(depth));
  ++used_;
  return true;
}

void ProfileTable::Reset() {
  UnmapBytes(slots_, capacity_ * sizeof(Entry));
  slots_ = nullptr;
  capacity_ = 0;
  used_ = 0;
}

namespace {

// Buffered writes to a file descriptor through a buffer mapped from the OS.
class FdSink {
 public:
  static constexpr size_t kCap = 64 * 1024;
  explicit FdSink(int fd) : fd_(fd), buf_(static_cast<char*>(MapZeroed(kCap))) {
    if (buf_ == nullptr) {
      ok_ = false;
      errno = ENOMEM;
    }
  }
  ~FdSink() { UnmapBytes(buf_, kCap); }
  FdSink(const FdSink&) = delete;
  FdSink& operator=(const FdSink&) = delete;

  void Put(const char* p, size_t n) {
    while (ok_ && n > 0) {
      size_t k = n < kCap - len_ ? n : kCap - len_;
      memcpy(buf_ + len_, p, k);
      len_ += k;
      p += k;
      n -= k;
      if (len_ == kCap) Flush();
    }
  }
  // Room to read into directly (at least 4 KiB), for copying files.
  char* Space(size_t* n) {
    if (kCap - len_ < 4096) Flush();
    *n = kCap - len_;
    return buf_ + len_;
  }
  void Commit(size_t n) { len_ += n; }
  bool Flush() {
    size_t off = 0;
    while (ok_ && off < len_) {
      ssize_t w = write(fd_, buf_ + off, len_ - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        if (w == 0) errno = EIO;
        ok_ = false;
        break;
      }
      off += static_cast<size_t>(w);
    }
    len_ = 0;
    return ok_;
  }
  bool ok() const { return ok_; }

 private:
  int fd_;
  char* buf_;
  size_t len_ = 0;
  bool ok_ = true;
};

void PutPair(Printer* p, size_t count, size_t bytes) {
  p->UW(count, 6).Str(": ").UW(bytes, 8).Str(" [").UW(count, 6).Str(": ").UW(bytes, 8).Str("] @");
}

// Copies /proc/self/maps into the sink (what pprof needs to find each
// address's object file).
void PutMaps(FdSink* sink) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;  // the profile is still readable, only unsymbolized
  for (;;) {
    size_t room;
    char* dst = sink->Space(&room);
    if (!sink->ok()) break;
    ssize_t n = read(fd, dst, room);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    sink->Commit(static_cast<size_t>(n));
  }
  close(fd);
}

}  // namespace

bool WriteHeapProfileToFd(int fd, const ProfileTable& table, size_t interval) {
  FdSink sink(fd);
  if (!sink.ok()) return false;
  size_t total_count = 0, total_bytes = 0;
  for (size_t i = 0; i < table.capacity(); ++i) {
    if (const ProfileTable::Entry* e = table.slot(i)) {
      total_count += e->count;
      total_bytes += e->count * e->size;
    }
  }
  // 19 characters per frame at most (" 0x" and 16 digits), plus the pairs.
  char line[kMaxStackDepth * 20 + 128];
  {
    Printer p(line, sizeof(line));
    p.Str("heap profile: ");
    PutPair(&p, total_count, total_bytes);
    p.Str(" heap_v2/").U(interval == 0 ? 1 : interval).Char('\n');
    sink.Put(p.data(), p.written());
  }
  for (size_t i = 0; i < table.capacity(); ++i) {
    const ProfileTable::Entry* e = table.slot(i);
    if (e == nullptr) continue;
    Printer p(line, sizeof(line));
    PutPair(&p, e->count, e->count * e->size);
    for (int d = 0; d < e->depth; ++d) {
      uintptr_t pc = reinterpret_cast<uintptr_t>(e->stack[d]);
      // The innermost frame as a call-site address (pprof leaves it alone).
      if (d == 0 && pc != 0) --pc;
      p.Char(' ').Hex(pc);
    }
    if (e->depth == 0) p.Str(" 0x0");  // pprof skips a line without addresses
    p.Char('\n');
    sink.Put(p.data(), p.written());
  }
  static const char kMaps[] = "\nMAPPED_LIBRARIES:\n";
  sink.Put(kMaps, sizeof(kMaps) - 1);
  if (!sink.Flush()) return false;
  PutMaps(&sink);
  return sink.Flush();
}

bool WriteHeapProfile(const char* path, const ProfileTable& table, size_t interval) {
  if (path == nullptr || path[0] == '\0') {
    errno = EINVAL;
    return false;
  }
  // A device or a FIFO (/dev/null, /dev/stdout, a pipe to a collector) is
  // written through: renaming a file onto it would replace it.
  if (os::IsSpecialFile(path)) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = WriteHeapProfileToFd(fd, table, interval);
    int saved = errno;
    close(fd);
    errno = saved;
    return ok;
  }
  // Otherwise written beside the target and renamed into place, so a reader
  // (a tool polling for dumps) never sees half a profile.
  char tmp[4096];
  Printer name(tmp, sizeof(tmp));
  name.Str(path).Str(".tmp.").U(static_cast<uint64_t>(getpid()));
  if (name.needed() >= sizeof(tmp)) {
    errno = ENAMETOOLONG;
    return false;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = WriteHeapProfileToFd(fd, table, interval);
  int saved = errno;
  if (close(fd) != 0 && ok) {
    ok = false;
    saved = errno;
  }
  if (ok && rename(tmp, path) != 0) {
    ok = false;
    saved = errno;
  }
  if (!ok) unlink(tmp);
  errno = saved;
  return ok;
}

}  // namespace jsmalloc
