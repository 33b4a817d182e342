// fragmented_trim: a heap left fragmented, then an explicit request to give
// memory back. The program allocates ~512 MiB (scale 1) of 16 B - 2 KiB
// objects, frees 15 of every 16 in a scattered order (one random survivor
// per group of 16 consecutive allocations, so the survivors are spread over
// the whole heap), and asks the allocator to return what it can:
//
//   malloc_trim(0)        when the allocator that provides malloc exports it
//                         (glibc; JSMalloc),
//   mallctl("arena.4096.purge")            jemalloc (4096 = MALLCTL_ARENAS_ALL),
//   MallocExtension_ReleaseFreeMemory()    gperftools tcmalloc,
//   mi_collect(true)                       mimalloc,
//
// after a 0.5 s pause (and another after it, so that the runner's RSS trace
// shows both levels). All are looked up with dlsym(RTLD_DEFAULT, ...), so
// the program links none of them. dlsym finds glibc's malloc_trim under
// every allocator, so it is only used when dladdr says it lives in the same
// object as malloc.
//
// Prints `wl: mem live_kib=... rss_pretrim_kib=... rss_trim_kib=...
// trim_fn=...`.
#include <dlfcn.h>

#include <numeric>
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_fragmented_trim: 512 MiB x scale of 16 B - 2 KiB objects (one thread),\n"
    "15 of every 16 freed in a scattered order, then the allocator's trim\n"
    "(malloc_trim(0), jemalloc's arena purge, tcmalloc's ReleaseFreeMemory or\n"
    "mimalloc's mi_collect(true), whichever the preloaded allocator has),\n"
    "with a 0.5 s pause (no allocator call) before and after it. Prints RSS\n"
    "before and after the trim and the live bytes.\n";

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kBytes = 512 * kMiB;
constexpr double kPauseSeconds = 0.5;

struct Obj {
  void* p;
  uint64_t tag;
  uint32_t size;
};

// The object that provides `sym` (its dli_fname), or "".
const char* ObjectOf(void* sym) {
  Dl_info info;
  if (sym == nullptr || dladdr(sym, &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

const char* BaseName(const char* path) {
  const char* slash = strrchr(path, '/');
  return slash != nullptr ? slash + 1 : path;
}

// Calls the trim function of the allocator in use; returns its name.
const char* Trim(char* name, size_t cap) {
  const char* malloc_obj = ObjectOf(dlsym(RTLD_DEFAULT, "malloc"));
  void* sym = dlsym(RTLD_DEFAULT, "malloc_trim");
  if (sym != nullptr && malloc_obj[0] != '\0' && strcmp(ObjectOf(sym), malloc_obj) == 0) {
    reinterpret_cast<int (*)(size_t)>(sym)(0);
    snprintf(name, cap, "malloc_trim(0):%s", BaseName(malloc_obj));
    return name;
  }
  if ((sym = dlsym(RTLD_DEFAULT, "mallctl")) != nullptr) {
    using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);
    int rc = reinterpret_cast<Mallctl>(sym)("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    snprintf(name, cap, "mallctl(arena.4096.purge)=%d:%s", rc, BaseName(ObjectOf(sym)));
    return name;
  }
  if ((sym = dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory")) != nullptr) {
    reinterpret_cast<void (*)()>(sym)();
    snprintf(name, cap, "MallocExtension_ReleaseFreeMemory:%s", BaseName(ObjectOf(sym)));
    return name;
  }
  if ((sym = dlsym(RTLD_DEFAULT, "mi_collect")) != nullptr) {
    reinterpret_cast<void (*)(bool)>(sym)(true);
    snprintf(name, cap, "mi_collect(true):%s", BaseName(ObjectOf(sym)));
    return name;
  }
  snprintf(name, cap, "none:%s", BaseName(malloc_obj));
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const uint64_t budget = wl::Scaled(kBytes, args.scale, 16 * kMiB);
  double t0 = wl::NowSeconds();
  wl::Statm statm;
  wl::Rng rng(0xf4a9);

  // Allocate: mean size ~440 B, so ~1.2M objects at scale 1.
  std::vector<Obj> objs;
  objs.reserve(budget / 400 + 1024);
  uint64_t total = 0;
  while (total < budget) {
    uint32_t size = static_cast<uint32_t>(rng.LogUniform(16, 2048));
    void* p = malloc(size);
    if (p == nullptr) wl::Die("malloc returned NULL");
    uint64_t tag = wl::Mix64(objs.size() + 1);
    wl::StampBlock(p, size, tag);
    objs.push_back(Obj{p, tag, size});
    total += size;
  }
  const uint64_t n = objs.size();
  long rss_full = statm.RssKib();

  // Survivors: one per group of 16 consecutive objects.
  auto survivor = [](uint64_t i) { return i % 16 == wl::Mix64(i / 16 + 77) % 16; };
  // Free the others in a scattered order (a stride coprime with n).
  uint64_t stride = n / 3 + 1;
  while (std::gcd(stride, n) != 1) ++stride;
  uint64_t sum = 0, live = 0, k = 0;
  for (uint64_t j = 0; j < n; ++j) {
    k = (k + stride) % n;
    Obj& o = objs[k];
    if (survivor(k)) {
      live += o.size;
      continue;
    }
    sum += wl::CheckBlock(o.p, o.size, o.tag);
    free(o.p);
    o.p = nullptr;
  }
  // Half a second before and after the trim, so that the runner's RSS trace
  // (a sample every 50 ms) shows the level on each side of it. Nothing calls
  // the allocator during the pauses.
  const long rss_freed = statm.RssKib();
  wl::SleepUntil(wl::NowSeconds() + kPauseSeconds);
  long anon_pre = 0, anon_post = 0;
  const long rss_pre = statm.RssKib(&anon_pre);
  char name[256];
  double tt = wl::NowSeconds();
  Trim(name, sizeof(name));
  double trim_ms = (wl::NowSeconds() - tt) * 1000.0;
  const long rss_post = statm.RssKib(&anon_post);
  wl::SleepUntil(wl::NowSeconds() + kPauseSeconds);

  // The survivors are intact after the trim.
  uint64_t survivors = 0;
  for (Obj& o : objs) {
    if (o.p == nullptr) continue;
    sum += wl::CheckBlock(o.p, o.size, o.tag);
    free(o.p);
    ++survivors;
  }
  if (survivors * 16 < n - 15 || survivors * 16 > n + 15) wl::Die("wrong number of survivors");
  fprintf(stderr, "wl: stage=allocated rss_kib=%ld objects=%llu bytes_kib=%llu\n", rss_full,
          static_cast<unsigned long long>(n), static_cast<unsigned long long>(total / 1024));
  fprintf(stderr, "wl: stage=freed rss_kib=%ld\n", rss_freed);
  fprintf(stderr,
          "wl: mem live_kib=%llu live_objects=%llu rss_pretrim_kib=%ld anon_pretrim_kib=%ld "
          "rss_trim_kib=%ld anon_trim_kib=%ld trim_ms=%.1f trim_fn=%s\n",
          static_cast<unsigned long long>(live / 1024), static_cast<unsigned long long>(survivors),
          rss_pre, anon_pre, rss_post, anon_post, trim_ms, name);
  return wl::Finish("fragmented_trim", sum, t0);
}
