#include "os/linux/numa_parse.h"

#include <cstring>
#include <new>

namespace jsmalloc::os {

namespace {

constexpr int kTopologyWords = kMaxTopologyCpus / 64;

// Mode flags the kernel ORs into the mode get_mempolicy returns
// (<linux/mempolicy.h>: MPOL_F_NUMA_BALANCING, MPOL_F_RELATIVE_NODES,
// MPOL_F_STATIC_NODES).
constexpr int kMpolModeFlags = (1 << 13) | (1 << 14) | (1 << 15);

bool IsSpace(char c) { return c == '\n' || c == '\r' || c == ' ' || c == '\t'; }

// The length of s[0, len) up to its first NUL, without trailing blanks.
size_t TrimmedLength(const char* s, size_t len) {
  size_t end = 0;
  while (end < len && s[end] != 0) ++end;
  while (end > 0 && IsSpace(s[end - 1])) --end;
  return end;
}

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

// Calls range(lo, hi) for every entry of a list, in order; false on
// malformed input or when range returns false.
template <typename Range>
bool WalkList(const char* s, size_t len, Range range) {
  const size_t end = TrimmedLength(s, len);
  if (end == 0) return true;  // empty list: e.g. a node without CPUs
  size_t i = 0;
  for (;;) {
    uint64_t lo = 0, hi = 0;
    if (!ParseDec(s, end, &i, &lo)) return false;
    hi = lo;
    if (i < end && s[i] == '-') {
      ++i;
      if (!ParseDec(s, end, &i, &hi) || hi < lo) return false;
    }
    if (!range(lo, hi)) return false;
    if (i == end) return true;
    if (s[i] != ',') return false;
    ++i;
  }
}

void SetBits(uint64_t* out, uint64_t lo, uint64_t hi) {
  for (uint64_t b = lo; b <= hi; ++b) out[b / 64] |= uint64_t{1} << (b % 64);
}

// ParseCpuList, or with `lenient` ParseSysfsCpuList.
bool ParseList(const char* s, size_t len, uint64_t* out, int bits, bool lenient) {
  if (bits <= 0) return false;
  const int words = (bits + 63) / 64;
  for (int w = 0; w < words; ++w) out[w] = 0;
  const uint64_t limit = static_cast<uint64_t>(bits);
  return WalkList(s, len, [&](uint64_t lo, uint64_t hi) {
    if (hi < limit) {
      SetBits(out, lo, hi);
      return true;
    }
    if (!lenient) return false;
    if (lo < limit) SetBits(out, lo, limit - 1);
    return true;
  });
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

bool ParseSysfsCpuList(const char* s, size_t len, uint64_t* out, int bits) {
  return ParseList(s, len, out, bits, true);
}

bool ParseCpuListHighest(const char* s, size_t len, int* highest) {
  uint64_t top = 0;
  bool any = false;
  // Values saturate near 2^40 (ParseDec); anything above INT_MAX is nonsense.
  const bool ok = WalkList(s, len, [&](uint64_t, uint64_t hi) {
    if (hi > 0x7fffffff) return false;
    if (!any || hi > top) top = hi;
    any = true;
    return true;
  });
  if (!ok) return false;
  *highest = any ? static_cast<int>(top) : -1;
  return true;
}

size_t WholeListEntries(const char* s, size_t len) {
  while (len > 0 && s[len - 1] != ',') --len;
  return len > 0 ? len - 1 : 0;
}

bool ParseStatusHexMask(const char* s, size_t len, uint64_t* low64) {
  const size_t end = TrimmedLength(s, len);
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

bool ParseMemsAllowedLine(const char* line, size_t len, uint64_t* mems) {
  static constexpr char kKey[] = "Mems_allowed:";
  constexpr size_t kKeyLen = sizeof(kKey) - 1;
  if (len <= kKeyLen || memcmp(line, kKey, kKeyLen) != 0) return false;
  const char* v = line + kKeyLen;
  size_t vlen = len - kKeyLen;
  while (vlen > 0 && (*v == ' ' || *v == '\t')) ++v, --vlen;
  return ParseStatusHexMask(v, vlen, mems);
}

MemPolicy MemPolicyFromKernel(int mode) {
  mode &= ~kMpolModeFlags;
  if (mode >= static_cast<int>(MemPolicy::kDefault) &&
      mode <= static_cast<int>(MemPolicy::kWeightedInterleave)) {
    return static_cast<MemPolicy>(mode);
  }
  return MemPolicy::kUnknown;
}

int AssignCpusToNode(NumaTopology* t, int node, const uint64_t* cpus) {
  int highest = -1;
  for (int c = 0; c < kMaxTopologyCpus; ++c) {
    if (((cpus[c / 64] >> (c % 64)) & 1) == 0) continue;
    if (t->cpu_node[c] < 0) t->cpu_node[c] = static_cast<int16_t>(node);
    highest = c;
  }
  return highest;
}

uint64_t NodesOfAllowedCpus(const NumaTopology& t) {
  uint64_t nodes = 0;
  for (int c = 0; c < t.num_cpus && c < kMaxTopologyCpus; ++c) {
    int n = t.cpu_node[c];
    if (n >= 0 && n < kMaxNumaNodes && t.AllowsCpu(c)) nodes |= uint64_t{1} << n;
  }
  return nodes;
}

void ResetNumaTopology(NumaTopology* t) { new (t) NumaTopology(); }

bool ParseNumaTopologySpec(const char* spec, NumaTopology* out) {
  ResetNumaTopology(out);
  if (spec == nullptr) return false;
  size_t len = strlen(spec);
  while (len > 0 && IsSpace(spec[len - 1])) --len;  // e.g. from a file
  if (len == 0) return false;
  for (size_t i = 0; i < len; ++i) {
    char c = spec[i];
    // The list parser tolerates trailing blanks per list; a spec has none inside.
    if (!((c >= '0' && c <= '9') || c == '-' || c == ',' || c == ';')) return false;
  }
  uint64_t cpus[kTopologyWords];
  uint64_t all[kTopologyWords] = {};
  int node = 0;
  size_t start = 0;
  for (;;) {
    size_t stop = start;
    while (stop < len && spec[stop] != ';') ++stop;
    if (node >= kMaxNumaNodes || !ParseCpuList(spec + start, stop - start, cpus, kMaxTopologyCpus)) {
      ResetNumaTopology(out);
      return false;
    }
    for (int w = 0; w < kTopologyWords; ++w) {
      if ((all[w] & cpus[w]) != 0) {  // a CPU in two nodes
        ResetNumaTopology(out);
        return false;
      }
      all[w] |= cpus[w];
    }
    const int highest = AssignCpusToNode(out, node, cpus);
    if (highest + 1 > out->num_cpus) out->num_cpus = highest + 1;
    ++node;
    if (stop == len) break;
    start = stop + 1;
  }
  if (out->num_cpus == 0) {
    ResetNumaTopology(out);
    return false;
  }
  const uint64_t nodes = node >= 64 ? ~0ull : (uint64_t{1} << node) - 1;
  out->num_nodes = node;
  out->nodes_online = nodes;
  out->nodes_with_memory = nodes;
  out->mems_allowed = nodes;
  memcpy(out->cpus_allowed, all, sizeof(all));
  out->nodes_of_allowed_cpus = NodesOfAllowedCpus(*out);
  out->policy = MemPolicy::kDefault;
  out->policy_nodes = 0;
  out->injected = true;
  return true;
}

}  // namespace jsmalloc::os
