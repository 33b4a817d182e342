// NUMA partitions driven directly: the plan on injected 2-, 4- and 8-node
// topologies and under each process policy; a two-partition middle-end and
// back-end over a fake page source (allocations come from the caller's
// partition, frees go home, nothing crosses, stats add up).
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "hugepage/huge_page_aware_allocator.h"
#include "backend/memory_limiter.h"
#include "backend/page_heap.h"
#include "backend/partitioned_backend.h"
#include "caches/central_free_list.h"
#include "caches/cpu_cache.h"
#include "runtime/numa_partitions.h"
#include "base/size_map.h"
#include "caches/transfer_cache.h"
#include "test_support.h"

namespace jsmalloc {
namespace {

os::NumaTopology Injected(const char* spec) {
  os::NumaTopology t;
  EXPECT_TRUE(os::ParseNumaTopologySpec(spec, &t)) << spec;
  return t;
}

// A "real" (not injected) machine of `nodes` nodes with `per` CPUs each.
os::NumaTopology Machine(int nodes, int per) {
  os::NumaTopology t;
  t.num_cpus = nodes * per;
  t.num_nodes = nodes;
  for (int c = 0; c < t.num_cpus; ++c) {
    t.cpu_node[c] = static_cast<int16_t>(c / per);
    t.cpus_allowed[c / 64] |= uint64_t{1} << (c % 64);
  }
  t.nodes_online = t.nodes_with_memory = t.nodes_of_allowed_cpus = (uint64_t{1} << nodes) - 1;
  return t;
}

TEST(NumaPlanTest, OffMeansOnePartitionAndNoPlacement) {
  NumaPlan plan;
  PlanNumaPartitions(Machine(2, 4), false, NumaBind::kStrict, &plan);
  EXPECT_EQ(plan.partitions, 1);
  for (int c = 0; c < 8; ++c) EXPECT_EQ(plan.PartitionOfCpu(c), 0);
  EXPECT_EQ(plan.place_mode[0], os::MemPolicy::kDefault);
}

TEST(NumaPlanTest, InjectedTwoAndFourNodesMapCpusToTheirNodes) {
  NumaPlan plan;
  PlanNumaPartitions(Injected("0;1"), true, NumaBind::kPreferred, &plan);
  EXPECT_EQ(plan.partitions, 2);
  EXPECT_EQ(plan.PartitionOfCpu(0), 0);
  EXPECT_EQ(plan.PartitionOfCpu(1), 1);
  EXPECT_EQ(plan.partition_node[1], 1);
  // Injected nodes are not the machine's: never mbind to them.
  EXPECT_EQ(plan.place_mode[0], os::MemPolicy::kDefault);
  EXPECT_EQ(plan.place_mode[1], os::MemPolicy::kDefault);

  PlanNumaPartitions(Injected("0-3;4-7;8-11;12-15"), true, NumaBind::kPreferred, &plan);
  EXPECT_EQ(plan.partitions, 4);
  for (int c = 0; c < 16; ++c) EXPECT_EQ(plan.PartitionOfCpu(c), c / 4) << c;
  for (int p = 0; p < 4; ++p) EXPECT_EQ(plan.partition_nodes[p], uint64_t{1} << p);
  EXPECT_EQ(plan.PartitionOfCpu(-1), 0);
  EXPECT_EQ(plan.PartitionOfCpu(4000), 0);
}

TEST(NumaPlanTest, EightNodesFoldIntoFourPartitions) {
  NumaPlan plan;
  PlanNumaPartitions(Injected("0;1;2;3;4;5;6;7"), true, NumaBind::kPreferred, &plan);
  EXPECT_EQ(plan.partitions, kMaxNumaPartitions);
  for (int c = 0; c < 8; ++c) EXPECT_EQ(plan.PartitionOfCpu(c), c % 4) << c;
  EXPECT_EQ(plan.partition_nodes[0], (1u << 0) | (1u << 4));
  EXPECT_EQ(plan.partition_nodes[3], (1u << 3) | (1u << 7));
}

TEST(NumaPlanTest, MemoryOnlyNodesGetNoPartition) {
  NumaPlan plan;
  PlanNumaPartitions(Injected("0-1;;2-3"), true, NumaBind::kPreferred, &plan);
  EXPECT_EQ(plan.partitions, 2);
  EXPECT_EQ(plan.PartitionOfCpu(2), 1);
  EXPECT_EQ(plan.partition_node[1], 2);
}

TEST(NumaPlanTest, PlacementFollowsBindModeAndProcessPolicy) {
  NumaPlan plan;
  os::NumaTopology t = Machine(2, 2);
  PlanNumaPartitions(t, true, NumaBind::kPreferred, &plan);
  ASSERT_EQ(plan.partitions, 2);
  EXPECT_EQ(plan.place_mode[0], os::MemPolicy::kPreferred);
  EXPECT_EQ(plan.place_nodes[1], 2u);
  PlanNumaPartitions(t, true, NumaBind::kStrict, &plan);
  EXPECT_EQ(plan.place_mode[1], os::MemPolicy::kBind);
  PlanNumaPartitions(t, true, NumaBind::kNone, &plan);
  EXPECT_EQ(plan.place_mode[0], os::MemPolicy::kDefault);
  EXPECT_EQ(plan.partitions, 2);  // partitions without placement still separate caches

  // numactl --membind=1: partition 0 cannot bind within the policy's nodes
  // (the kernel's bind decides); partition 1 binds strictly to node 1.
  t.policy = os::MemPolicy::kBind;
  t.policy_nodes = 2;
  PlanNumaPartitions(t, true, NumaBind::kPreferred, &plan);
  EXPECT_EQ(plan.place_mode[0], os::MemPolicy::kDefault);
  EXPECT_EQ(plan.place_mode[1], os::MemPolicy::kBind);
  EXPECT_EQ(plan.place_nodes[1], 2u);

  // --interleave and --preferred are left to the kernel.
  t.policy = os::MemPolicy::kInterleave;
  t.policy_nodes = 3;
  PlanNumaPartitions(t, true, NumaBind::kStrict, &plan);
  EXPECT_EQ(plan.place_mode[0], os::MemPolicy::kDefault);
  EXPECT_EQ(plan.place_mode[1], os::MemPolicy::kDefault);
  t.policy = os::MemPolicy::kPreferred;
  t.policy_nodes = 1;
  PlanNumaPartitions(t, true, NumaBind::kStrict, &plan);
  EXPECT_EQ(plan.place_mode[1], os::MemPolicy::kDefault);

  // A cpuset without node 1's memory: partition 1 is left to the kernel.
  t.policy = os::MemPolicy::kDefault;
  t.mems_allowed = 1;
  PlanNumaPartitions(t, true, NumaBind::kStrict, &plan);
  EXPECT_EQ(plan.place_mode[0], os::MemPolicy::kBind);
  EXPECT_EQ(plan.place_mode[1], os::MemPolicy::kDefault);
}

TEST(NumaPlanTest, CpuNodeBindLeavesOnePartitionOnThatNode) {
  // numactl --cpunodebind=1 on a two-node machine: only node 1's CPUs.
  os::NumaTopology t = Machine(2, 2);
  t.cpus_allowed[0] = 0b1100;
  t.nodes_of_allowed_cpus = 2;
  NumaPlan plan;
  PlanNumaPartitions(t, true, NumaBind::kPreferred, &plan);
  EXPECT_EQ(plan.partitions, 1);
  EXPECT_EQ(plan.partition_node[0], 1);
  EXPECT_EQ(plan.place_mode[0], os::MemPolicy::kPreferred);
  EXPECT_EQ(plan.place_nodes[0], 2u);
}

// Two partitions' back-ends and middle-ends, as the process builds them.
template <typename Backend>
struct TwoPartitions {
  static constexpr int kParts = 2;
  std::unique_ptr<PageMap> pagemap = testing::NewPageMap();
  testing::FakePageSource source[kParts];
  std::unique_ptr<Backend> raw[kParts];
  PartitionedBackend partitioned;
  std::unique_ptr<MemoryLimiter> limiter;
  PartitionView view[kParts];
  CentralFreeList central[kParts][kMaxClasses];
  TransferCache transfer[kParts][kMaxClasses];
  std::vector<void*> slots[kParts][kMaxClasses];
  static inline int current = 0;
  static inline TwoPartitions* self = nullptr;

  static CentralFreeList* Home(int p, int cl) { return &self->central[p][cl]; }
  static int Current() { return current; }

  TwoPartitions() {
    self = this;
    PageAllocator* parts[kParts];
    int nodes[kParts] = {0, 1};
    for (int p = 0; p < kParts; ++p) {
      raw[p] = Make(p);
      parts[p] = raw[p].get();
    }
    partitioned.Init(parts, nodes, kParts, &Current);
    limiter = std::make_unique<MemoryLimiter>(&partitioned);
    for (int p = 0; p < kParts; ++p) {
      view[p].Init(limiter.get(), raw[p].get(), p);
      for (int cl = 1; cl < kNumClasses; ++cl) {
        central[p][cl].Init(cl, SizeMap::ClassSize(cl), SizeMap::ClassPages(cl), &view[p], pagemap.get());
        central[p][cl].SetPartition(p, p, &Home);
        int cap = TransferCache::DefaultCapacity(SizeMap::ClassSize(cl), SizeMap::BatchSize(cl));
        slots[p][cl].resize(static_cast<size_t>(cap));
        transfer[p][cl].Init(&central[p][cl], slots[p][cl].data(), cap);
      }
    }
  }
  std::unique_ptr<Backend> Make(int p);
  int PartitionOf(void* obj) { return pagemap->Get(PageIdOf(obj))->partition; }
  size_t Live(int p) {
    size_t n = 0;
    for (int cl = 1; cl < kNumClasses; ++cl) n += central[p][cl].Stats().live_objects;
    return n;
  }
};

template <>
std::unique_ptr<PageHeap> TwoPartitions<PageHeap>::Make(int p) {
  PageHeapOptions o;
  o.partition = static_cast<uint8_t>(p);
  return std::make_unique<PageHeap>(pagemap.get(), &source[p], GlobalArena(), o);
}

uint64_t FakeClock() { return 0; }

template <>
std::unique_ptr<HugePageAwareAllocator> TwoPartitions<HugePageAwareAllocator>::Make(int p) {
  HugePageAwareOptions o;
  o.clock = &FakeClock;
  o.partition = static_cast<uint8_t>(p);
  return std::make_unique<HugePageAwareAllocator>(pagemap.get(), &source[p], GlobalArena(), o);
}

// Each check runs over both back-ends (plain functions: the components are
// built without RTTI, which typed tests would need).
template <typename TypeParam>
void EachPartitionServesFromItsOwnBackend() {
  TwoPartitions<TypeParam> t;
  const int cl = SizeMap::ClassFor(96);
  std::vector<void*> objs[2];
  for (int p = 0; p < 2; ++p) {
    TwoPartitions<TypeParam>::current = p;
    for (int i = 0; i < 3000; ++i) {
      void* o;
      ASSERT_EQ(t.transfer[p][cl].RemoveRange(&o, 1), 1);
      EXPECT_EQ(t.PartitionOf(o), p);
      objs[p].push_back(o);
    }
    // Large allocations through the partitioned back-end: the caller's.
    Span* s = t.partitioned.New(40);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->partition, p);
    EXPECT_GT(t.source[p].mapped_bytes.load(), 0u);
    t.partitioned.Delete(s);
  }
  // Nothing of partition 1 came from partition 0's pages and vice versa.
  BackendStats b0 = t.raw[0]->Stats(), b1 = t.raw[1]->Stats(), sum = t.partitioned.Stats();
  EXPECT_EQ(sum.in_use_bytes, b0.in_use_bytes + b1.in_use_bytes);
  EXPECT_EQ(sum.system_bytes, b0.system_bytes + b1.system_bytes);
  EXPECT_EQ(t.partitioned.BackedBytes(), t.raw[0]->BackedBytes() + t.raw[1]->BackedBytes());
  EXPECT_EQ(t.Live(0), 3000u);
  EXPECT_EQ(t.Live(1), 3000u);

  // Remote frees: everything handed to the wrong partition's transfer cache
  // ends up home once the caches drain.
  for (int p = 0; p < 2; ++p) {
    for (void* o : objs[p]) t.transfer[1 - p][cl].InsertRange(&o, 1);
  }
  for (int p = 0; p < 2; ++p) t.transfer[p][cl].Drain();
  EXPECT_EQ(t.Live(0), 0u);
  EXPECT_EQ(t.Live(1), 0u);
  EXPECT_EQ(t.raw[0]->Stats().in_use_bytes, 0u);
  EXPECT_EQ(t.raw[1]->Stats().in_use_bytes, 0u);
  EXPECT_EQ(t.central[0][cl].Stats().objects_rehomed + t.central[1][cl].Stats().objects_rehomed, 6000u);
}

template <typename TypeParam>
void ReleaseAndLimitCoverEveryPartition() {
  TwoPartitions<TypeParam> t;
  std::vector<Span*> spans;
  for (int p = 0; p < 2; ++p) {
    TwoPartitions<TypeParam>::current = p;
    for (int i = 0; i < 8; ++i) spans.push_back(t.view[p].New(64));
  }
  for (Span* s : spans) {
    ASSERT_NE(s, nullptr);
    t.limiter->Delete(s);
  }
  size_t free_before = t.partitioned.Stats().free_bytes;
  size_t released = t.limiter->ReleaseAtLeast(~size_t{0});
  EXPECT_GE(released, free_before);
  EXPECT_GT(t.source[0].released_bytes.load(), 0u);
  EXPECT_GT(t.source[1].released_bytes.load(), 0u);
  // A hard limit counts both partitions together.
  t.limiter->SetLimit(size_t{1} << 20, true);
  TwoPartitions<TypeParam>::current = 1;
  EXPECT_EQ(t.view[1].New(PagesFor(size_t{4} << 20)), nullptr);
  EXPECT_EQ(t.limiter->limit_failures(), 1u);
}

TEST(NumaPartitionsTest, EachPartitionServesFromItsOwnBackendPageHeap) {
  EachPartitionServesFromItsOwnBackend<PageHeap>();
}
TEST(NumaPartitionsTest, EachPartitionServesFromItsOwnBackendHugePageAware) {
  EachPartitionServesFromItsOwnBackend<HugePageAwareAllocator>();
}
TEST(NumaPartitionsTest, ReleaseAndLimitCoverEveryPartitionPageHeap) {
  ReleaseAndLimitCoverEveryPartition<PageHeap>();
}
TEST(NumaPartitionsTest, ReleaseAndLimitCoverEveryPartitionHugePageAware) {
  ReleaseAndLimitCoverEveryPartition<HugePageAwareAllocator>();
}

TEST(NumaPageHeapTest, HeapsNeverCoalesceAcrossPartitions) {
  // Two heaps whose mappings are adjacent in the address space.
  auto pagemap = testing::NewPageMap();
  struct Adjacent final : PageSource {
    char* next = nullptr;
    void* Map(size_t bytes, size_t, void*, bool) override {
      void* p = next;
      next += bytes;
      return p;
    }
    bool Release(void* p, size_t n) override { return os::ReleasePages(p, n); }
  } src;
  size_t total = size_t{16} << 20;
  src.next = static_cast<char*>(os::MapAligned(total, kHugePageSize, nullptr));
  char* base = src.next;
  PageHeapOptions o0, o1;
  o1.partition = 1;
  o0.min_grow_bytes = o1.min_grow_bytes = kHugePageSize;
  PageHeap h0(pagemap.get(), &src, GlobalArena(), o0), h1(pagemap.get(), &src, GlobalArena(), o1);
  Span* a = h0.New(PagesFor(kHugePageSize));  // all of heap 0's mapping
  Span* b = h1.New(PagesFor(kHugePageSize));  // the next one, heap 1's
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(static_cast<char*>(b->start()), static_cast<char*>(a->start()) + kHugePageSize);
  h1.Delete(b);
  h0.Delete(a);  // its free neighbour belongs to heap 1
  EXPECT_TRUE(h0.CheckInvariants());
  EXPECT_TRUE(h1.CheckInvariants());
  EXPECT_EQ(h0.Stats().free_bytes + h0.Stats().unmapped_bytes, kHugePageSize);
  EXPECT_EQ(h1.Stats().free_bytes + h1.Stats().unmapped_bytes, kHugePageSize);
  Span* again = h0.New(PagesFor(kHugePageSize));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->start(), static_cast<void*>(base));
  EXPECT_EQ(again->partition, 0);
  os::Unmap(base, total);
}

// The per-CPU cache with partitions: a CPU fills from and drains to its own
// partition's transfer caches.
using testing::FakeCpuEnv;

TEST(NumaCpuCacheTest, CpusFillFromAndDrainToTheirPartition) {
  TwoPartitions<HugePageAwareAllocator> t;
  PerCpuSlab slab;
  const int cpus = 4;  // CPUs 0,1 on node 0; 2,3 on node 1
  void* mem = PerCpuSlab::MapMemory(cpus);
  uint16_t caps[kMaxClasses];
  PerCpuSlab::ComputeMaxCapacities(caps);
  slab.Init(mem, cpus, caps);
  FakeCpuEnv env;
  CpuCacheT<FakeCpuEnv> cache;
  cache.Init(&env, &slab, t.transfer[0], GlobalArena(), size_t{1} << 20);
  TransferCache* per_part[2] = {t.transfer[0], t.transfer[1]};
  static const uint8_t cpu_partition[cpus] = {0, 0, 1, 1};
  cache.SetPartitions(per_part, cpu_partition, 2);
  const int cl = SizeMap::ClassFor(48);
  std::vector<void*> got[cpus];
  for (int c = 0; c < cpus; ++c) {
    env.cpu = c;
    for (int i = 0; i < 500; ++i) {
      void* p = env.Pop(&slab, cl);
      if (p == nullptr) p = cache.Underflow(cl);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(t.PartitionOf(p), cpu_partition[c]) << "cpu " << c;
      got[c].push_back(p);
    }
  }
  // Free each CPU's objects on a CPU of the same node, overflowing into the
  // partition's transfer cache; then drain everything.
  for (int c = 0; c < cpus; ++c) {
    env.cpu = c ^ 1;
    for (void* p : got[c]) {
      if (!env.Push(&slab, cl, p)) cache.Overflow(p, cl);
    }
  }
  cache.DrainAll();
  for (int p = 0; p < 2; ++p) {
    size_t n = t.transfer[p][cl].objects();
    void* buf[64];
    while (n > 0) {
      int k = t.transfer[p][cl].RemoveRange(buf, n < 64 ? static_cast<int>(n) : 64);
      for (int i = 0; i < k; ++i) EXPECT_EQ(t.PartitionOf(buf[i]), p);
      t.transfer[p][cl].InsertRange(buf, k);
      break;
    }
    t.transfer[p][cl].Drain();
  }
  EXPECT_EQ(t.Live(0), 0u);
  EXPECT_EQ(t.Live(1), 0u);
  PerCpuSlab::UnmapMemory(mem, cpus);
}

}  // namespace
}  // namespace jsmalloc
