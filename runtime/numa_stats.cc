#include "runtime/numa_stats.h"

#include <cstring>

#include "backend/bound_page_source.h"
#include "runtime/hugepage_coverage.h"
#include "runtime/static_vars.h"

namespace jsmalloc {

NumaPartitionStats GetNumaPartitionStats(int p) {
  NumaPartitionStats s;
  const NumaPlan& plan = Static::numa_plan();
  s.nodes = plan.partition_nodes[p];
  for (int cpu = 0; cpu < plan.num_cpus; ++cpu) {
    if (plan.cpu_partition[cpu] == p) ++s.cpus;
  }
  BackendStats b = Static::partition_backend(p)->Stats();
  s.heap_bytes = b.system_bytes;
  s.in_use_bytes = b.in_use_bytes;
  s.free_bytes = b.free_bytes;
  s.released_bytes = b.unmapped_bytes;
  for (int cl = 1; cl < kNumClasses; ++cl) {
    CentralStats c = Static::central(p, cl).Stats();
    s.free_bytes += c.free_bytes + Static::transfer(p)[cl].objects() * SizeMap::ClassSize(cl);
    s.rehomed += c.objects_rehomed;
  }
  const BoundPageSource& src = Static::partition_source(p);
  s.bound_bytes = src.bound_bytes();
  s.bind_failures = src.bind_failures();
  s.remote_frees = Static::partition_remote_frees(p);
  return s;
}

namespace {

Printer& NodeList(Printer* out, uint64_t mask) {
  bool first = true;
  for (int n = 0; n < 64; ++n) {
    if (((mask >> n) & 1) == 0) continue;
    if (!first) out->Char(',');
    out->U(static_cast<uint64_t>(n));
    first = false;
  }
  if (first) out->Str("none");
  return *out;
}

const char* PlaceModeName(os::MemPolicy m) {
  return m == os::MemPolicy::kDefault ? "none" : os::MemPolicyName(m);
}

}  // namespace

void PrintNumaSection(Printer* out) {
  const NumaPlan& plan = Static::numa_plan();
  const os::NumaTopology* topo = Static::numa_topology();
  out->Str("------------------------------------------------\n");
  if (!plan.aware || topo == nullptr) {
    out->Str("NUMA: aware mode off (JSMALLOC_NUMA_AWARE=1 partitions memory per node)\n");
    return;
  }
  out->Str("NUMA: aware, ").U(static_cast<uint64_t>(Static::num_partitions()))
      .Str(Static::num_partitions() == 1 ? " partition" : " partitions").Str("; topology ")
      .Str(Static::numa_topology_source()).Str(":\n  nodes online ");
  NodeList(out, topo->nodes_online).Str(", with memory ");
  NodeList(out, topo->nodes_with_memory).Str(", of the allowed CPUs ");
  NodeList(out, topo->nodes_of_allowed_cpus).Char('\n');
  out->Str("NUMA: process policy ").Str(os::MemPolicyName(topo->policy));
  if (topo->policy_nodes != 0) NodeList(&out->Str(" nodes "), topo->policy_nodes);
  out->Str(", cpuset mems ");
  if (topo->mems_allowed == ~uint64_t{0}) out->Str("all");
  else NodeList(out, topo->mems_allowed);
  out->Str(";\n  placement: ").Str(plan.placement).Char('\n');
  // MiB columns: heap mapped, in use, free, released, bound by mbind.
  out->Str("  part  nodes  cpus  heap  in_use  free  released  bound  mbind       remote_frees"
           "  rehomed  cov%\n");
  for (int p = 0; p < Static::num_partitions(); ++p) {
    NumaPartitionStats s = GetNumaPartitionStats(p);
    HugepageCoverage c = ComputePartitionHugepageCoverage(p);
    char nodes[32];
    Printer np(nodes, sizeof(nodes));
    NodeList(&np, s.nodes);
    out->UW(static_cast<uint64_t>(p), 6).Str("  ").StrW(np.data(), 5).UW(s.cpus, 6)
        .UW(s.heap_bytes >> 20, 6).UW(s.in_use_bytes >> 20, 8).UW(s.free_bytes >> 20, 6)
        .UW(s.released_bytes >> 20, 10).UW(s.bound_bytes >> 20, 7).Str("  ")
        .StrW(PlaceModeName(plan.place_mode[p]), 10).UW(s.remote_frees, 14).UW(s.rehomed, 9)
        .Str("  ").F(static_cast<double>(c.ppm) / 10000.0, 1).Char('\n');
    if (s.bind_failures > 0) {
      out->Str("        mbind failed ").U(s.bind_failures).Str(" times (errno ")
          .U(static_cast<uint64_t>(Static::partition_source(p).last_bind_error()))
          .Str("); those mappings follow the default policy\n");
    }
  }
}

bool GetNumaProperty(const char* name, size_t* value) {
  const NumaPlan& plan = Static::numa_plan();
  const os::NumaTopology* topo = Static::numa_topology();
  const char* rest = name + sizeof("jsmalloc.numa.") - 1;
  const struct {
    const char* name;
    size_t v;
  } whole[] = {
      {"aware", plan.aware ? size_t{1} : 0},
      {"partitions", static_cast<size_t>(Static::num_partitions())},
      {"nodes_online", topo != nullptr ? static_cast<size_t>(__builtin_popcountll(topo->nodes_online)) : 1},
      {"injected_topology", topo != nullptr && topo->injected ? size_t{1} : 0},
      {"process_policy", topo != nullptr ? static_cast<size_t>(topo->policy) : 0},
      {"process_policy_nodes", topo != nullptr ? topo->policy_nodes : 0},
  };
  for (const auto& e : whole) {
    if (strcmp(rest, e.name) == 0) {
      *value = e.v;
      return true;
    }
  }
  // jsmalloc.numa.partition<P>.<field>; partitions that do not exist read 0.
  if (strncmp(rest, "partition", 9) != 0 || rest[9] < '0' || rest[9] > '9' || rest[10] != '.') {
    return false;
  }
  int p = rest[9] - '0';
  if (p >= kMaxNumaPartitions) return false;
  const char* field = rest + 11;
  static const char* const kFields[] = {"nodes", "cpus", "heap_bytes", "in_use_bytes", "free_bytes",
                                        "released_bytes", "bound_bytes", "remote_frees",
                                        "hugepage_coverage"};
  int f = -1;
  for (int i = 0; i < static_cast<int>(sizeof(kFields) / sizeof(kFields[0])); ++i) {
    if (strcmp(field, kFields[i]) == 0) f = i;
  }
  if (f < 0) return false;
  *value = 0;
  if (p >= Static::num_partitions()) return true;
  if (f == 8) {
    *value = ComputePartitionHugepageCoverage(p).ppm;
    return true;
  }
  NumaPartitionStats s = GetNumaPartitionStats(p);
  const size_t v[] = {s.nodes, s.cpus, s.heap_bytes, s.in_use_bytes, s.free_bytes,
                      s.released_bytes, s.bound_bytes, s.remote_frees};
  *value = v[f];
  return true;
}

}  // namespace jsmalloc
