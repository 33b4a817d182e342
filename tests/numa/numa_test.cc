// NUMA-aware mode in a process running on JSMalloc.
//
// JSMALLOC_TEST_NUMA_MODE=injected (with JSMALLOC_NUMA_TOPOLOGY=0/1): two
// injected nodes, CPU 0 and CPU 1. Threads pinned to each CPU must get memory
// of their node's partition, remote frees go home, stats add up.
//
// JSMALLOC_TEST_NUMA_MODE=real2: the same tests (NumaTwoNodes.*) on a machine
// with two real nodes, node 0 = CPU 0 and node 1 = CPU 1 (the two-node guest
// of tests/vm); each touched page is also checked with move_pages to lie on
// the allocating CPU's node. Skipped on a machine without two such nodes.
//
// JSMALLOC_TEST_NUMA_MODE=real: the machine's topology, one node or more.
// On each node with CPUs the process may use, a thread pinned there allocates;
// its blocks must be bound as JSMALLOC_TEST_EXPECT_PLACEMENT says
// ("preferred:1" = MPOL_PREFERRED on node mask 1, "bind:1", "default:0" = no
// policy of JSMalloc's own, "preferred:local" = the node mask of the thread's
// node), checked with get_mempolicy(MPOL_F_ADDR), and every page of every
// block must sit on JSMALLOC_TEST_EXPECT_NODE (a node number, "local" = the
// thread's node, the default, "spread" = both nodes 0 and 1 hold pages, as
// under --interleave=0,1, or "first-touch" for JSMALLOC_NUMA_BIND=none, which
// leaves placement to the kernel: every page move_pages resolves is on the
// thread's node, 1% allowed, and pages it cannot resolve, see below, are
// counted, not failed), checked with move_pages.
// JSMALLOC_TEST_EXPECT_PROCESS_POLICY names the process policy JSMalloc must
// report (numactl runs).
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "jsmalloc/jsmalloc.h"

namespace {

std::string Mode() {
  const char* m = getenv("JSMALLOC_TEST_NUMA_MODE");
  return m != nullptr ? m : "";
}

size_t Prop(const char* name) {
  size_t v = 0;
  EXPECT_TRUE(jsmalloc_get_numeric_property(name, &v)) << name;
  return v;
}

size_t PartProp(int p, const char* field) {
  std::string n = "jsmalloc.numa.partition" + std::to_string(p) + "." + field;
  return Prop(n.c_str());
}

void PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  ASSERT_EQ(sched_setaffinity(0, sizeof(set), &set), 0) << "cpu " << cpu;
  ASSERT_EQ(sched_getcpu(), cpu);
}

// Runs fn on a thread pinned to cpu.
template <typename Fn>
void OnCpu(int cpu, Fn fn) {
  std::thread t([&] {
    PinTo(cpu);
    fn();
  });
  t.join();
}

// The machine's node of a CPU (sysfs), -1 if none is listed.
int RealNodeOfCpu(int cpu) {
  for (int n = 0; n < 64; ++n) {
    std::string d = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/node" + std::to_string(n);
    if (access(d.c_str(), F_OK) == 0) return n;
  }
  return -1;
}

// The nodes of the CPUs this process may run on, each with its first such CPU.
std::vector<std::pair<int, int>> NodesOfAllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<std::pair<int, int>> out;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return out;
  std::set<int> seen;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    int node = std::max(RealNodeOfCpu(cpu), 0);
    if (seen.insert(node).second) out.emplace_back(node, cpu);
  }
  return out;
}

// The node each page of [p, p+bytes) sits on (move_pages; -errno for a page
// that is not present).
std::vector<int> NodesOfPages(void* p, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
  std::vector<void*> pages;
  for (; a < end; a += page) pages.push_back(reinterpret_cast<void*>(a));
  std::vector<int> status(pages.size(), -1000);
  if (syscall(SYS_move_pages, 0, pages.size(), pages.data(), nullptr, status.data(), 0) != 0) {
    std::fill(status.begin(), status.end(), -1000);
  }
  return status;
}

bool RealTwoNodes() { return Mode() == "real2"; }

// The node an allocation on `cpu` must come from: CPU n is node n both in
// the injected topology 0/1 and in the two-node guest.
int NodeOfCpu(int cpu) { return RealTwoNodes() ? RealNodeOfCpu(cpu) : cpu; }

class NumaTwoNodes : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Mode() != "injected" && Mode() != "real2") {
      GTEST_SKIP() << "runs with JSMALLOC_TEST_NUMA_MODE=injected or real2";
    }
    ASSERT_GE(sysconf(_SC_NPROCESSORS_ONLN), 2) << "needs two CPUs";
    if (RealTwoNodes() && (RealNodeOfCpu(0) != 0 || RealNodeOfCpu(1) != 1)) {
      GTEST_SKIP() << "needs a machine whose CPU 0 is on node 0 and CPU 1 on node 1 "
                      "(tests/vm boots one: tests/vm/README.md); here CPU 0 is on node "
                   << RealNodeOfCpu(0) << ", CPU 1 on node " << RealNodeOfCpu(1);
    }
  }
};

TEST_F(NumaTwoNodes, ModeIsOnWithTwoPartitions) {
  EXPECT_EQ(Prop("jsmalloc.numa.aware"), 1u);
  EXPECT_EQ(Prop("jsmalloc.numa.partitions"), 2u);
  EXPECT_EQ(Prop("jsmalloc.numa.injected_topology"), RealTwoNodes() ? 0u : 1u);
  if (RealTwoNodes()) {
    EXPECT_EQ(Prop("jsmalloc.numa.nodes_online"), 2u);
    EXPECT_EQ(PartProp(0, "nodes"), 1u);
    EXPECT_EQ(PartProp(1, "nodes"), 2u);
  }
  EXPECT_EQ(PartProp(0, "cpus"), 1u);
  EXPECT_EQ(PartProp(1, "cpus"), 1u);
}

TEST_F(NumaTwoNodes, AllocationsComeFromTheCpusNode) {
  const size_t sizes[] = {8, 16, 100, 1000, 9000, 70000, 262144, 300000, size_t{4} << 20};
  for (int cpu = 0; cpu < 2; ++cpu) {
    OnCpu(cpu, [&] {
      for (int round = 0; round < 200; ++round) {
        std::vector<void*> v;
        for (size_t s : sizes) {
          for (int k = 0; k < 4; ++k) {
            void* p = malloc(s);
            ASSERT_NE(p, nullptr);
            memset(p, 0x5a, s < 4096 ? s : 4096);
            EXPECT_EQ(jsmalloc_get_numa_node(p), NodeOfCpu(cpu)) << "size " << s << " on cpu " << cpu;
            if (RealTwoNodes() && round % 50 == 0) {
              for (int n : NodesOfPages(p, s < 4096 ? s : 4096)) {
                EXPECT_EQ(n, NodeOfCpu(cpu)) << "page of a " << s << "-byte block on cpu " << cpu;
              }
            }
            v.push_back(p);
          }
        }
        for (void* p : v) free(p);
      }
    });
  }
  EXPECT_EQ(jsmalloc_get_numa_node(reinterpret_cast<void*>(&Mode)), -1);
}

TEST_F(NumaTwoNodes, RemoteFreesGoHomeAndAreNeverHandedToTheOtherNode) {
  constexpr int kObjects = 20000;
  std::vector<void*> from0(kObjects);
  OnCpu(0, [&] {
    for (void*& p : from0) p = malloc(64);
  });
  size_t remote_before = PartProp(0, "remote_frees");
  OnCpu(1, [&] {
    for (void* p : from0) free(p);
    // Node 1 keeps allocating the same class: none of node 0's objects.
    std::vector<void*> mine;
    for (int i = 0; i < 2 * kObjects; ++i) {
      void* p = malloc(64);
      EXPECT_EQ(jsmalloc_get_numa_node(p), 1);
      mine.push_back(p);
    }
    for (void* p : mine) free(p);
  });
  // A sampled object (its own span) is not a remote free of a cached object.
  EXPECT_GE(PartProp(0, "remote_frees") - remote_before, static_cast<size_t>(kObjects) * 99 / 100);
  OnCpu(0, [&] {
    for (int i = 0; i < kObjects; ++i) {
      void* p = malloc(64);
      EXPECT_EQ(jsmalloc_get_numa_node(p), 0);
      from0[i] = p;
    }
    for (void* p : from0) free(p);
  });
}

TEST_F(NumaTwoNodes, CrossNodeChurnKeepsEveryObjectHome) {
  // Two pinned threads trade objects through a shared ring; every object a
  // thread allocates must be of its own node, whoever freed it last.
  constexpr int kSlots = 4096;
  std::vector<std::atomic<void*>> ring(kSlots);
  std::atomic<long> wrong{0};
  auto worker = [&](int cpu) {
    PinTo(cpu);
    unsigned seed = 7 + cpu;
    for (int i = 0; i < 300000; ++i) {
      size_t s = 8 + (rand_r(&seed) % 2048);
      void* p = malloc(s);
      if (jsmalloc_get_numa_node(p) != cpu) wrong.fetch_add(1);
      memset(p, cpu, 8);
      void* old = ring[rand_r(&seed) % kSlots].exchange(p);
      free(old);
    }
  };
  std::thread a(worker, 0), b(worker, 1);
  a.join();
  b.join();
  for (auto& s : ring) free(s.exchange(nullptr));
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(PartProp(0, "remote_frees") + PartProp(1, "remote_frees"), 0u);
}

TEST_F(NumaTwoNodes, PartitionStatsAddUpToTheWhole) {
  std::vector<void*> keep;
  for (int cpu = 0; cpu < 2; ++cpu) {
    OnCpu(cpu, [&] {
      for (int i = 0; i < 1000; ++i) keep.push_back(malloc(1000 + cpu * 100000));
    });
  }
  size_t heap = PartProp(0, "heap_bytes") + PartProp(1, "heap_bytes");
  size_t in_use = PartProp(0, "in_use_bytes") + PartProp(1, "in_use_bytes");
  size_t released = PartProp(0, "released_bytes") + PartProp(1, "released_bytes");
  EXPECT_EQ(heap, Prop("generic.heap_size"));
  EXPECT_EQ(in_use, Prop("jsmalloc.page_heap_in_use_bytes"));
  EXPECT_EQ(released, Prop("jsmalloc.page_heap_unmapped_bytes"));
  EXPECT_GE(PartProp(1, "in_use_bytes"), size_t{1000} * 100000);
  EXPECT_EQ(PartProp(2, "heap_bytes"), 0u);  // no such partition
  for (void* p : keep) free(p);
  char buf[1 << 16];
  jsmalloc_get_stats(buf, sizeof(buf));
  EXPECT_NE(strstr(buf, "NUMA: aware, 2 partitions"), nullptr) << buf;
  if (RealTwoNodes()) {
    EXPECT_EQ(strstr(buf, "injected"), nullptr) << buf;
    EXPECT_GT(PartProp(0, "bound_bytes"), 0u);
    EXPECT_GT(PartProp(1, "bound_bytes"), 0u);
    printf("%s\n", strstr(buf, "NUMA: aware"));
  } else {
    EXPECT_NE(strstr(buf, "injected"), nullptr);
  }
}

// --- The real kernel ----------------------------------------------------------

constexpr int kMpolFAddr = 2;

bool AddressPolicy(void* p, int* mode, unsigned long* nodes) {
  unsigned long mask[16] = {};
  long r = syscall(SYS_get_mempolicy, mode, mask, 1024, p, kMpolFAddr);
  *nodes = mask[0];
  return r == 0;
}

class NumaReal : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Mode() != "real") GTEST_SKIP() << "runs with JSMALLOC_TEST_NUMA_MODE=real";
  }
};

TEST_F(NumaReal, PagesAreBoundAsIntendedAndLieOnTheirNode) {
  const char* expect = getenv("JSMALLOC_TEST_EXPECT_PLACEMENT");
  ASSERT_NE(expect, nullptr) << "set JSMALLOC_TEST_EXPECT_PLACEMENT";
  std::string e = expect;
  std::string want_mode = e.substr(0, e.find(':'));
  std::string want_mask = e.substr(e.find(':') + 1);
  const char* names[] = {"default", "preferred", "bind", "interleave", "local", "preferred-many"};
  int want = -1;
  for (int i = 0; i < 6; ++i) {
    if (want_mode == names[i]) want = i;
  }
  ASSERT_GE(want, 0) << expect;
  const char* en = getenv("JSMALLOC_TEST_EXPECT_NODE");
  std::string expect_node = en != nullptr ? en : "local";
  EXPECT_EQ(Prop("jsmalloc.numa.aware"), 1u);
  // One partition per node of the CPUs this process may use: one on a
  // one-node machine or under --cpunodebind, two in the two-node guest.
  const std::vector<std::pair<int, int>> nodes = NodesOfAllowedCpus();
  ASSERT_FALSE(nodes.empty());
  EXPECT_EQ(Prop("jsmalloc.numa.partitions"), nodes.size());
  std::map<int, size_t> per_node;  // node (or -errno) -> pages
  std::map<int, std::map<int, size_t>> per_thread;  // the allocating thread's node -> per_node
  size_t pages_checked = 0, off_node = 0, unresolved = 0;
  for (auto [node, cpu] : nodes) {
    OnCpu(cpu, [&, node = node] {
      const unsigned long mask = want_mask == "local" ? 1ul << node : std::stoul(want_mask);
      // Small objects (filler), medium (regions) and large (hugepage cache).
      std::vector<std::pair<char*, size_t>> blocks;
      const size_t sizes[] = {64, 4096, 200000, size_t{3} << 20, size_t{16} << 20};
      for (size_t s : sizes) {
        for (int i = 0; i < 8; ++i) {
          char* p = static_cast<char*>(malloc(s));
          ASSERT_NE(p, nullptr);
          memset(p, 1, s);
          blocks.emplace_back(p, s);
        }
      }
      for (auto [p, s] : blocks) {
        int mode = -1;
        unsigned long got = 0;
        ASSERT_TRUE(AddressPolicy(p, &mode, &got)) << strerror(errno);
        EXPECT_EQ(mode, want) << "policy of " << static_cast<void*>(p) << " on node " << node;
        if (want != 0) EXPECT_EQ(got, mask) << "nodes of " << static_cast<void*>(p);
        std::vector<int> where = NodesOfPages(p, s);
        pages_checked += where.size();
        int want_node = expect_node == "local" || expect_node == "first-touch" ? node
                        : expect_node == "spread"                       ? -1
                                                                        : std::stoi(expect_node);
        size_t wrong = 0;
        for (size_t i = 0; i < where.size(); ++i) {
          ++per_node[where[i]];
          ++per_thread[node][where[i]];
          if (want_node >= 0 && where[i] != want_node) ++wrong;
          if (want_node < 0 && where[i] != 0 && where[i] != 1) ++wrong;
        }
        if (expect_node == "first-touch") {
          // Pages move_pages cannot stat (-ENOENT, -EFAULT) are not misplaced:
          // on 6.1 with automatic NUMA balancing (kernel.numa_balancing=1, the
          // default on a multi-node machine) the pages of a VMA without a policy
          // get PROT_NONE hinting entries, which move_pages reports so.
          for (int w : where) {
            if (w >= 0 && w != node) ++off_node;
            if (w < 0) ++unresolved;
          }
        } else {
          EXPECT_EQ(wrong, 0u) << wrong << " of the " << where.size() << " pages of a " << s
                               << "-byte block allocated on node " << node << " are not on node " << want_node
                               << " (first: " << where[0] << ")";
        }
      }
      for (auto [p, s] : blocks) free(p);
    });
  }
  printf("%zu partition(s); %zu pages checked with move_pages:", nodes.size(), pages_checked);
  for (auto [n, count] : per_node) printf(" %zu on %s%d", count, n < 0 ? "error " : "node ", n);
  printf("\n");
  for (auto& [t, m] : per_thread) {
    printf("  allocated on node %d:", t);
    for (auto [n, count] : m) printf(" %zu on %s%d", count, n < 0 ? "error " : "node ", n);
    printf("\n");
  }
  if (expect_node == "spread") {
    EXPECT_GT(per_node[0], 0u) << "pages interleaved over nodes 0 and 1";
    EXPECT_GT(per_node[1], 0u) << "pages interleaved over nodes 0 and 1";
  }
  if (expect_node == "first-touch") {
    // No policy of JSMalloc's: the kernel places pages where they were first
    // touched (it could fall back to another node when the toucher's is full:
    // 1% allowed).
    printf("first touch: %zu of %zu pages off the toucher's node, %zu not resolved by move_pages\n", off_node,
           pages_checked, unresolved);
    EXPECT_LE(off_node, pages_checked / 100) << "pages on the node that touched them first";
    EXPECT_GT(pages_checked - unresolved, 0u);
  }
  for (size_t p = 0; p < nodes.size(); ++p) {
    if (want != 0) EXPECT_GT(PartProp(static_cast<int>(p), "bound_bytes"), 0u) << "partition " << p;
    else EXPECT_EQ(PartProp(static_cast<int>(p), "bound_bytes"), 0u) << "partition " << p;
  }
  const char* policy = getenv("JSMALLOC_TEST_EXPECT_PROCESS_POLICY");
  if (policy != nullptr) EXPECT_EQ(Prop("jsmalloc.numa.process_policy"), std::stoul(policy));
}

}  // namespace
