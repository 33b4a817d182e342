#include "os/linux/numa.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <new>

namespace jsmalloc::os {

namespace {

// The kernel's mempolicy ABI (<linux/mempolicy.h>); spelled out here because
// <numaif.h> comes with libnuma-dev, which may be absent.
constexpr int kMpolDefault = 0;
constexpr int kMpolPreferred = 1;
constexpr int kMpolBind = 2;
constexpr int kMpolInterleave = 3;
constexpr int kMpolLocal = 4;
constexpr int kMpolPreferredMany = 5;
constexpr int kMpolWeightedInterleave = 6;
// get_mempolicy flags.
[[maybe_unused]] constexpr unsigned long kMpolFNode = 1;  // we ask move_pages instead
constexpr unsigned long kMpolFAddr = 2;
constexpr unsigned long kMpolFMemsAllowed = 4;
// Mode flags the kernel ORs into the returned mode.
constexpr int kMpolFNumaBalancing = 1 << 13;
constexpr int kMpolFRelativeNodes = 1 << 14;
constexpr int kMpolFStaticNodes = 1 << 15;
constexpr int kMpolModeFlags = kMpolFNumaBalancing | kMpolFRelativeNodes | kMpolFStaticNodes;
// mbind flags (we pass none: fresh mappings have no pages to move).
[[maybe_unused]] constexpr unsigned long kMpolMfStrict = 1;
[[maybe_unused]] constexpr unsigned long kMpolMfMove = 2;
[[maybe_unused]] constexpr unsigned long kMpolMfMoveAll = 4;

static_assert(sizeof(unsigned long) == sizeof(uint64_t), "node masks are passed as longs");
static_assert(static_cast<int>(MemPolicy::kWeightedInterleave) == kMpolWeightedInterleave);
static_assert(CPU_SETSIZE >= kMaxTopologyCpus, "affinity is read into a fixed cpu_set_t");

// get_mempolicy fails with EINVAL when maxnode < the kernel's nr_node_ids;
// MAX_NUMNODES is at most 1024 (NODES_SHIFT 10), so this always fits.
constexpr int kKernelMaxNodes = 1024;
constexpr int kTopologyWords = kMaxTopologyCpus / 64;

constexpr char kPossibleCpus[] = "/sys/devices/system/cpu/possible";

// A path built in a fixed buffer; `ok` turns false if it would not fit.
struct PathBuf {
  char s[512];
  size_t n = 0;
  bool ok = true;
  PathBuf& Add(const char* p) {
    while (*p != 0) {
      if (n + 1 >= sizeof(s)) {
        ok = false;
        break;
      }
      s[n++] = *p++;
    }
    s[n] = 0;
    return *this;
  }
  PathBuf& AddInt(int v) {
    char tmp[12];
    int k = 0;
    do {
      tmp[k++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v > 0 && k < 11);
    char out[12];
    for (int i = 0; i < k; ++i) out[i] = tmp[k - 1 - i];
    out[k] = 0;
    return Add(out);
  }
};

// Reads a whole small file into buf (NUL-terminated); bytes read or -1.
// Sets *truncated when the file did not fit.
ssize_t ReadFile(const char* path, char* buf, size_t cap, bool* truncated) {
  *truncated = false;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t have = 0;
  while (have + 1 < cap) {
    ssize_t n = read(fd, buf + have, cap - 1 - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return -1;
    }
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  if (have + 1 >= cap) {
    char probe;
    ssize_t n;
    do {
      n = read(fd, &probe, 1);
    } while (n < 0 && errno == EINTR);
    *truncated = n > 0;
  }
  close(fd);
  buf[have] = 0;
  return static_cast<ssize_t>(have);
}

bool IsSpace(char c) { return c == '\n' || c == '\r' || c == ' ' || c == '\t'; }

// One decimal number at s[*i..end); saturates so huge values still compare
// as out of range instead of wrapping.
bool ParseDec(const char* s, size_t end, size_t* i, uint64_t* v) {
  size_t k = *i;
  uint64_t x = 0;
  while (k < end && s[k] >= '0' && s[k] <= '9') {
    if (x < (uint64_t{1} << 40)) x = x * 10 + static_cast<uint64_t>(s[k] - '0');
    ++k;
  }
  if (k == *i) return false;
  *i = k;
  *v = x;
  return true;
}

void SetBits(uint64_t* out, uint64_t lo, uint64_t hi) {
  for (uint64_t b = lo; b <= hi; ++b) out[b / 64] |= uint64_t{1} << (b % 64);
}

// ParseCpuList, and the lenient form used on the machine's own files: there
// values >= bits are dropped (a 2048-CPU box still maps its first 1024) and
// a truncated file is parsed up to its last complete entry.
bool ParseList(const char* s, size_t len, uint64_t* out, int bits, bool lenient) {
  if (bits <= 0) return false;
  const int words = (bits + 63) / 64;
  for (int w = 0; w < words; ++w) out[w] = 0;
  size_t end = 0;
  while (end < len && s[end] != 0) ++end;
  while (end > 0 && IsSpace(s[end - 1])) --end;
  if (end == 0) return true;  // empty list: e.g. a node without CPUs
  size_t i = 0;
  const uint64_t limit = static_cast<uint64_t>(bits);
  for (;;) {
    uint64_t lo = 0, hi = 0;
    if (!ParseDec(s, end, &i, &lo)) return false;
    hi = lo;
    if (i < end && s[i] == '-') {
      ++i;
      if (!ParseDec(s, end, &i, &hi) || hi < lo) return false;
    }
    if (hi >= limit) {
      if (!lenient) return false;
      if (lo < limit) SetBits(out, lo, limit - 1);
    } else {
      SetBits(out, lo, hi);
    }
    if (i == end) return true;
    if (s[i] != ',') return false;
    ++i;
  }
}

// Reads a sysfs list file into a kMaxTopologyCpus-bit map (leniently).
bool ReadListFile(const char* path, uint64_t* out) {
  char buf[4096];
  bool truncated = false;
  ssize_t n = ReadFile(path, buf, sizeof(buf), &truncated);
  if (n < 0) return false;
  if (truncated) {
    // Keep whole entries only: cut at the last separator.
    while (n > 0 && buf[n - 1] != ',') --n;
    if (n > 0) --n;
  }
  return ParseList(buf, static_cast<size_t>(n), out, kMaxTopologyCpus, true);
}

// Affinity of the calling thread; highest CPU or -1 on failure.
int ReadAffinity(uint64_t* words) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
  int highest = -1;
  for (int w = 0; w < kTopologyWords; ++w) words[w] = 0;
  for (int c = 0; c < kMaxTopologyCpus; ++c) {
    if (CPU_ISSET(c, &set)) {
      words[c / 64] |= uint64_t{1} << (c % 64);
      highest = c;
    }
  }
  return highest;
}

int HighestBit(uint64_t v) { return v == 0 ? -1 : 63 - __builtin_clzll(v); }

MemPolicy ModeToPolicy(int mode) {
  mode &= ~kMpolModeFlags;
  if (mode >= kMpolDefault && mode <= kMpolWeightedInterleave) return static_cast<MemPolicy>(mode);
  return MemPolicy::kUnknown;
}

// get_mempolicy keeping the low 64 bits of the mask; retries with the
// largest possible mask when the kernel has more node ids than we ask for.
long GetMemPolicy(int* mode, uint64_t* nodes, const void* addr, unsigned long flags) {
  unsigned long mask[kKernelMaxNodes / 64] = {};
  long r = syscall(SYS_get_mempolicy, mode, mask, kMaxNumaNodes + 1, addr, flags);
  if (r != 0 && errno == EINVAL) {
    r = syscall(SYS_get_mempolicy, mode, mask, kKernelMaxNodes + 1, addr, flags);
  }
  if (r == 0) *nodes = mask[0];
  return r;
}

// The "Mems_allowed:" line of /proc/self/status, read line by line through
// a small buffer (Cpus_allowed before it can be long on big machines).
bool ReadStatusMemsAllowed(uint64_t* out) {
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  static constexpr char kKey[] = "Mems_allowed:";
  constexpr size_t kKeyLen = sizeof(kKey) - 1;
  char buf[1024];
  size_t have = 0;
  bool skipping = false;  // inside a line longer than buf: not ours
  bool found = false, eof = false;
  while (!found && !eof) {
    ssize_t n = read(fd, buf + have, sizeof(buf) - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof = true;
      if (have == 0) break;
      buf[have++] = '\n';  // close the last line (have < sizeof(buf) here)
    } else {
      have += static_cast<size_t>(n);
    }
    size_t start = 0;
    for (size_t k = 0; k < have && !found; ++k) {
      if (buf[k] != '\n') continue;
      size_t len = k - start;
      if (!skipping && len > kKeyLen && memcmp(buf + start, kKey, kKeyLen) == 0) {
        const char* v = buf + start + kKeyLen;
        size_t vlen = len - kKeyLen;
        while (vlen > 0 && (*v == ' ' || *v == '\t')) ++v, --vlen;
        found = ParseStatusHexMask(v, vlen, out);
      }
      skipping = false;
      start = k + 1;
    }
    if (found) break;
    memmove(buf, buf + start, have - start);
    have -= start;
    if (have == sizeof(buf)) {
      skipping = true;
      have = 0;
    }
  }
  close(fd);
  return found;
}

// No NUMA in the kernel: one node 0 with every possible CPU.
bool SingleNodeFallback(NumaTopology* t) {
  uint64_t cpus[kTopologyWords];
  bool have = ReadListFile(kPossibleCpus, cpus);
  uint64_t aff[kTopologyWords];
  int aff_highest = ReadAffinity(aff);
  if (!have) {
    if (aff_highest < 0) return false;
    memcpy(cpus, aff, sizeof(cpus));
  }
  int highest = aff_highest;
  for (int c = 0; c < kMaxTopologyCpus; ++c) {
    if ((cpus[c / 64] >> (c % 64)) & 1) {
      t->cpu_node[c] = 0;
      if (c > highest) highest = c;
    }
  }
  if (highest < 0) return false;
  t->num_cpus = highest + 1;
  t->nodes_online = 1;
  t->nodes_with_memory = 1;
  t->num_nodes = 1;
  return true;
}

bool ReadTopology(const char* node_dir, NumaTopology* t) {
  if (node_dir == nullptr) return SingleNodeFallback(t);
  uint64_t bits[kTopologyWords];
  uint64_t online = 0;
  bool have_online = false;
  {
    PathBuf p;
    p.Add(node_dir).Add("/online");
    if (p.ok && ReadListFile(p.s, bits)) {
      online = bits[0];
      have_online = true;
    }
  }
  if (!have_online) {
    // No "online" file: count the nodeN directories that have a cpulist.
    int dfd = open(node_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return SingleNodeFallback(t);
    close(dfd);
    for (int n = 0; n < kMaxNumaNodes; ++n) {
      PathBuf p;
      p.Add(node_dir).Add("/node").AddInt(n).Add("/cpulist");
      int fd = p.ok ? open(p.s, O_RDONLY | O_CLOEXEC) : -1;
      if (fd >= 0) {
        close(fd);
        online |= uint64_t{1} << n;
      }
    }
    if (online == 0) return SingleNodeFallback(t);
  }
  int highest_cpu = -1;
  for (int n = 0; n < kMaxNumaNodes; ++n) {
    if (((online >> n) & 1) == 0) continue;
    PathBuf p;
    p.Add(node_dir).Add("/node").AddInt(n).Add("/cpulist");
    if (!p.ok || !ReadListFile(p.s, bits)) continue;  // node without cpulist: no CPUs
    for (int c = 0; c < kMaxTopologyCpus; ++c) {
      if (((bits[c / 64] >> (c % 64)) & 1) == 0) continue;
      if (t->cpu_node[c] < 0) t->cpu_node[c] = static_cast<int16_t>(n);
      if (c > highest_cpu) highest_cpu = c;
    }
  }
  uint64_t with_memory = online;
  {
    PathBuf p;
    p.Add(node_dir).Add("/has_memory");
    if (p.ok && ReadListFile(p.s, bits)) with_memory = bits[0];
  }
  uint64_t aff[kTopologyWords];
  int aff_highest = ReadAffinity(aff);
  t->nodes_online = online;
  t->nodes_with_memory = with_memory;
  t->num_nodes = HighestBit(online | with_memory) + 1;
  int hi = highest_cpu > aff_highest ? highest_cpu : aff_highest;
  t->num_cpus = hi + 1;
  return true;
}

// Back to defaults in place: `*t = NumaTopology()` would put a 2.3 KiB
// temporary on the stack, and we may run on a small thread stack.
void Reset(NumaTopology* t) { new (t) NumaTopology(); }

uint64_t NodesOfCpus(const NumaTopology& t) {
  uint64_t nodes = 0;
  for (int c = 0; c < t.num_cpus && c < kMaxTopologyCpus; ++c) {
    int n = t.cpu_node[c];
    if (n >= 0 && n < kMaxNumaNodes && t.AllowsCpu(c)) nodes |= uint64_t{1} << n;
  }
  return nodes;
}

}  // namespace

const char* MemPolicyName(MemPolicy p) {
  switch (p) {
    case MemPolicy::kDefault: return "default";
    case MemPolicy::kPreferred: return "preferred";
    case MemPolicy::kBind: return "bind";
    case MemPolicy::kInterleave: return "interleave";
    case MemPolicy::kLocal: return "local";
    case MemPolicy::kPreferredMany: return "preferred-many";
    case MemPolicy::kWeightedInterleave: return "weighted-interleave";
    default: return "unknown";
  }
}

bool NumaTopology::AllowsCpu(int cpu) const {
  if (cpu < 0 || cpu >= kMaxTopologyCpus) return false;
  return ((cpus_allowed[cpu / 64] >> (cpu % 64)) & 1) != 0;
}

int NumaTopology::NodeOfCpu(int cpu) const {
  if (cpu < 0 || cpu >= num_cpus || cpu >= kMaxTopologyCpus) return -1;
  return cpu_node[cpu];
}

bool ParseCpuList(const char* s, size_t len, uint64_t* out, int bits) {
  return ParseList(s, len, out, bits, false);
}

bool ParseStatusHexMask(const char* s, size_t len, uint64_t* low64) {
  size_t end = 0;
  while (end < len && s[end] != 0) ++end;
  while (end > 0 && IsSpace(s[end - 1])) --end;
  if (end == 0) return false;
  uint64_t v = 0;
  size_t i = 0;
  for (;;) {
    uint32_t word = 0;
    size_t digits = 0;
    for (; i < end && s[i] != ','; ++i, ++digits) {
      char c = s[i];
      uint32_t d;
      if (c >= '0' && c <= '9') {
        d = static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        d = static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        d = static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
      word = (word << 4) | d;
    }
    if (digits == 0 || digits > 8) return false;
    // Most significant word first: shifting left drops all but the low 64 bits.
    v = (v << 32) | word;
    if (i == end) break;
    ++i;  // ','
    if (i == end) return false;
  }
  *low64 = v;
  return true;
}

bool ReadNumaTopology(const char* node_dir, NumaTopology* out) {
  int saved = errno;
  Reset(out);
  bool ok = ReadTopology(node_dir, out);
  errno = saved;
  return ok;
}

void ReadProcessNumaState(NumaTopology* out) {
  int saved = errno;
  uint64_t aff[kTopologyWords];
  if (ReadAffinity(aff) >= 0) {
    memcpy(out->cpus_allowed, aff, sizeof(aff));
  } else if (!out->injected) {
    // Affinity unknown: assume every known CPU.
    for (int c = 0; c < out->num_cpus && c < kMaxTopologyCpus; ++c) {
      if (out->cpu_node[c] >= 0) out->cpus_allowed[c / 64] |= uint64_t{1} << (c % 64);
    }
  }
  out->nodes_of_allowed_cpus = NodesOfCpus(*out);
  if (!out->injected) {
    uint64_t mems = 0;
    int unused_mode = 0;
    if (ReadStatusMemsAllowed(&mems)) {
      out->mems_allowed = mems;
    } else if (GetMemPolicy(&unused_mode, &mems, nullptr, kMpolFMemsAllowed) == 0) {
      out->mems_allowed = mems;  // no /proc (early boot, chroot)
    } else {
      out->mems_allowed = ~0ull;
    }
    int mode = 0;
    uint64_t nodes = 0;
    if (GetMemPolicy(&mode, &nodes, nullptr, 0) == 0) {
      out->policy = ModeToPolicy(mode);
      out->policy_nodes = nodes;
    } else if (errno == ENOSYS) {
      out->policy = MemPolicy::kDefault;  // no NUMA in the kernel
      out->policy_nodes = 0;
    } else {
      out->policy = MemPolicy::kUnknown;
      out->policy_nodes = 0;
    }
  }
  errno = saved;
}

bool ParseNumaTopologySpec(const char* spec, NumaTopology* out) {
  Reset(out);
  if (spec == nullptr) return false;
  size_t len = strlen(spec);
  while (len > 0 && IsSpace(spec[len - 1])) --len;  // e.g. from a file
  if (len == 0) return false;
  for (size_t i = 0; i < len; ++i) {
    char c = spec[i];
    // ParseList tolerates trailing blanks per list; a spec has none inside.
    if (!((c >= '0' && c <= '9') || c == '-' || c == ',' || c == ';')) return false;
  }
  uint64_t cpus[kTopologyWords];
  uint64_t all[kTopologyWords] = {};
  int node = 0;
  size_t start = 0;
  for (;;) {
    size_t stop = start;
    while (stop < len && spec[stop] != ';') ++stop;
    if (node >= kMaxNumaNodes ||
        !ParseList(spec + start, stop - start, cpus, kMaxTopologyCpus, false)) {
      Reset(out);
      return false;
    }
    for (int w = 0; w < kTopologyWords; ++w) {
      if ((all[w] & cpus[w]) != 0) {  // a CPU in two nodes
        Reset(out);
        return false;
      }
      all[w] |= cpus[w];
    }
    for (int c = 0; c < kMaxTopologyCpus; ++c) {
      if ((cpus[c / 64] >> (c % 64)) & 1) {
        out->cpu_node[c] = static_cast<int16_t>(node);
        if (c + 1 > out->num_cpus) out->num_cpus = c + 1;
      }
    }
    ++node;
    if (stop == len) break;
    start = stop + 1;
  }
  if (out->num_cpus == 0) {
    Reset(out);
    return false;
  }
  const uint64_t nodes = node >= 64 ? ~0ull : (uint64_t{1} << node) - 1;
  out->num_nodes = node;
  out->nodes_online = nodes;
  out->nodes_with_memory = nodes;
  out->mems_allowed = nodes;
  memcpy(out->cpus_allowed, all, sizeof(all));
  out->nodes_of_allowed_cpus = NodesOfCpus(*out);
  out->policy = MemPolicy::kDefault;
  out->policy_nodes = 0;
  out->injected = true;
  return true;
}

int BindMemory(void* addr, size_t len, MemPolicy mode, uint64_t nodes) {
  int m;
  switch (mode) {
    case MemPolicy::kDefault:
    case MemPolicy::kLocal:
      if (nodes != 0) return EINVAL;  // the kernel wants an empty mask
      m = mode == MemPolicy::kDefault ? kMpolDefault : kMpolLocal;
      break;
    case MemPolicy::kPreferred:
    case MemPolicy::kBind:
    case MemPolicy::kInterleave:
    case MemPolicy::kPreferredMany:
    case MemPolicy::kWeightedInterleave:
      // An empty mask would mean "local" for preferred; make callers say so.
      if (nodes == 0) return EINVAL;
      m = static_cast<int>(mode);
      break;
    default:
      return EINVAL;
  }
  static_assert(kMpolPreferred == 1 && kMpolBind == 2 && kMpolInterleave == 3 &&
                kMpolPreferredMany == 5);
  int saved = errno;
  unsigned long mask = nodes;
  long r = nodes == 0 ? syscall(SYS_mbind, addr, len, m, nullptr, 0UL, 0UL)
                      : syscall(SYS_mbind, addr, len, m, &mask,
                                static_cast<unsigned long>(kMaxNumaNodes + 1), 0UL);
  int err = r == 0 ? 0 : errno;
  errno = saved;
  return err;
}

bool AddressPolicy(const void* addr, MemPolicy* mode, uint64_t* nodes) {
  int saved = errno;
  int m = 0;
  uint64_t mask = 0;
  bool ok = GetMemPolicy(&m, &mask, addr, kMpolFAddr) == 0;
  if (ok) {
    *mode = ModeToPolicy(m);
    *nodes = mask;
  }
  errno = saved;
  return ok;
}

int NodeOfPage(const void* addr) {
  int saved = errno;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  void* pages[1] = {reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(addr) & ~(page - 1))};
  int status[1] = {-ENOENT};
  // nodes == nullptr: only report where each page is, move nothing.
  long r = syscall(SYS_move_pages, 0, 1UL, pages, nullptr, status, 0);
  int result = r < 0 ? -errno : status[0];
  errno = saved;
  return result;
}

int CurrentCpuSlow() {
  int saved = errno;
  int cpu = sched_getcpu();
  errno = saved;
  return cpu < 0 ? -1 : cpu;
}

}  // namespace jsmalloc::os
