#include "os/linux/numa.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "os/linux/file_io.h"
#include "os/linux/numa_parse.h"

namespace jsmalloc::os {

namespace {

// get_mempolicy flags (<linux/mempolicy.h>; spelled out here because
// <numaif.h> comes with libnuma-dev, which may be absent).
constexpr unsigned long kMpolFAddr = 2;
constexpr unsigned long kMpolFMemsAllowed = 4;

static_assert(sizeof(unsigned long) == sizeof(uint64_t), "node masks are passed as longs");
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

// Reads a sysfs list file into a kMaxTopologyCpus-bit map (leniently); a
// file too long for the buffer is parsed up to its last complete entry.
bool ReadListFile(const char* path, uint64_t* out) {
  char buf[4096];
  bool truncated = false;
  long n = ReadSmallFile(path, buf, sizeof(buf), &truncated);
  if (n < 0) return false;
  if (truncated) n = static_cast<long>(WholeListEntries(buf, static_cast<size_t>(n)));
  return ParseSysfsCpuList(buf, static_cast<size_t>(n), out, kMaxTopologyCpus);
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
  int fd = OpenForReading("/proc/self/status");
  if (fd < 0) return false;
  char buf[1024];
  size_t have = 0;
  bool skipping = false;  // inside a line longer than buf: not ours
  bool found = false, eof = false;
  while (!found && !eof) {
    long n = ReadSome(fd, buf + have, sizeof(buf) - have);
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
      if (!skipping) found = ParseMemsAllowedLine(buf + start, k - start, out);
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
  CloseFile(fd);
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
      int fd = p.ok ? OpenForReading(p.s) : -1;
      if (fd >= 0) {
        CloseFile(fd);
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
    const int highest = AssignCpusToNode(t, n, bits);
    if (highest > highest_cpu) highest_cpu = highest;
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

}  // namespace

bool ReadNumaTopology(const char* node_dir, NumaTopology* out) {
  int saved = errno;
  ResetNumaTopology(out);
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
  out->nodes_of_allowed_cpus = NodesOfAllowedCpus(*out);
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
      out->policy = MemPolicyFromKernel(mode);
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

int BindMemory(void* addr, size_t len, MemPolicy mode, uint64_t nodes) {
  int m;
  switch (mode) {
    case MemPolicy::kDefault:
    case MemPolicy::kLocal:
      if (nodes != 0) return EINVAL;  // the kernel wants an empty mask
      m = static_cast<int>(mode);
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
    *mode = MemPolicyFromKernel(m);
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

int PossibleCpuCount() {
  static int cached = 0;
  if (cached > 0) return cached;
  int count = 0;
  int saved = errno;
  char buf[1024];
  bool truncated = false;
  long n = ReadSmallFile(kPossibleCpus, buf, sizeof(buf), &truncated);
  if (n > 0) {
    // The highest number + 1 is what indexes need.
    if (truncated) n = static_cast<long>(WholeListEntries(buf, static_cast<size_t>(n)));
    int highest = -1;
    if (ParseCpuListHighest(buf, static_cast<size_t>(n), &highest)) count = highest + 1;
  }
  if (count <= 0) {
    long conf = sysconf(_SC_NPROCESSORS_CONF);
    count = conf > 0 ? static_cast<int>(conf) : 1;
  }
  errno = saved;
  cached = count;
  return count;
}

int CurrentCpuSlow() {
  int saved = errno;
  int cpu = sched_getcpu();
  errno = saved;
  return cpu < 0 ? -1 : cpu;
}

}  // namespace jsmalloc::os
