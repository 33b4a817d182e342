// NUMA-aware mode in a process running on JSMalloc.
//
// JSMALLOC_TEST_NUMA_MODE=injected (with JSMALLOC_NUMA_TOPOLOGY=0/1): two
// injected nodes, CPU 0 and CPU 1. Threads pinned to each CPU must get memory
// of their node's partition, remote frees go home, stats add up.
//
// JSMALLOC_TEST_NUMA_MODE=real: the machine's topology. Pages handed out must
// be bound as JSMALLOC_TEST_EXPECT_PLACEMENT says ("preferred:1" = MPOL_PREFERRED
// on node mask 1, "bind:1", "default:0" = no policy of JSMalloc's own), checked
// with get_mempolicy(MPOL_F_ADDR), and touched pages must sit on node 0
// (move_pages). JSMALLOC_TEST_EXPECT_PROCESS_POLICY names the process policy
// JSMalloc must report (numactl runs).
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
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

class NumaInjected : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Mode() != "injected") GTEST_SKIP() << "runs with JSMALLOC_TEST_NUMA_MODE=injected";
    ASSERT_GE(sysconf(_SC_NPROCESSORS_ONLN), 2) << "needs two CPUs";
  }
};

TEST_F(NumaInjected, ModeIsOnWithTwoPartitions) {
  EXPECT_EQ(Prop("jsmalloc.numa.aware"), 1u);
  EXPECT_EQ(Prop("jsmalloc.numa.partitions"), 2u);
  EXPECT_EQ(Prop("jsmalloc.numa.injected_topology"), 1u);
  EXPECT_EQ(PartProp(0, "cpus"), 1u);
  EXPECT_EQ(PartProp(1, "cpus"), 1u);
}

TEST_F(NumaInjected, AllocationsComeFromTheCpusNode) {
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
            EXPECT_EQ(jsmalloc_get_numa_node(p), cpu) << "size " << s << " on cpu " << cpu;
            v.push_back(p);
          }
        }
        for (void* p : v) free(p);
      }
    });
  }
  EXPECT_EQ(jsmalloc_get_numa_node(reinterpret_cast<void*>(&Mode)), -1);
}

TEST_F(NumaInjected, RemoteFreesGoHomeAndAreNeverHandedToTheOtherNode) {
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

TEST_F(NumaInjected, CrossNodeChurnKeepsEveryObjectHome) {
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

TEST_F(NumaInjected, PartitionStatsAddUpToTheWhole) {
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
  EXPECT_NE(strstr(buf, "injected"), nullptr);
}

// --- The real kernel ----------------------------------------------------------

constexpr int kMpolFAddr = 2;

bool AddressPolicy(void* p, int* mode, unsigned long* nodes) {
  unsigned long mask[16] = {};
  long r = syscall(SYS_get_mempolicy, mode, mask, 1024, p, kMpolFAddr);
  *nodes = mask[0];
  return r == 0;
}

int NodeOfPage(void* p) {
  void* pages[1] = {p};
  int status[1] = {-1};
  if (syscall(SYS_move_pages, 0, 1, pages, nullptr, status, 0) != 0) return -1000;
  return status[0];
}

class NumaReal : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Mode() != "real") GTEST_SKIP() << "runs with JSMALLOC_TEST_NUMA_MODE=real";
  }
};

TEST_F(NumaReal, PagesAreBoundAsIntendedAndLieOnNodeZero) {
  const char* expect = getenv("JSMALLOC_TEST_EXPECT_PLACEMENT");
  ASSERT_NE(expect, nullptr) << "set JSMALLOC_TEST_EXPECT_PLACEMENT";
  std::string e = expect;
  std::string want_mode = e.substr(0, e.find(':'));
  unsigned long want_nodes = std::stoul(e.substr(e.find(':') + 1));
  const int mode_of[] = {0, 1, 2, 3, 4, 5};
  const char* names[] = {"default", "preferred", "bind", "interleave", "local", "preferred-many"};
  int want = -1;
  for (int i = 0; i < 6; ++i) {
    if (want_mode == names[i]) want = mode_of[i];
  }
  ASSERT_GE(want, 0) << expect;
  EXPECT_EQ(Prop("jsmalloc.numa.aware"), 1u);
  EXPECT_EQ(Prop("jsmalloc.numa.partitions"), 1u);  // one real node here

  // Small objects (filler), medium (regions) and large (hugepage cache).
  std::vector<void*> blocks;
  const size_t sizes[] = {64, 4096, 200000, size_t{3} << 20, size_t{16} << 20};
  for (size_t s : sizes) {
    for (int i = 0; i < 8; ++i) {
      char* p = static_cast<char*>(malloc(s));
      ASSERT_NE(p, nullptr);
      memset(p, 1, s);
      blocks.push_back(p);
    }
  }
  for (void* p : blocks) {
    int mode = -1;
    unsigned long nodes = 0;
    ASSERT_TRUE(AddressPolicy(p, &mode, &nodes)) << strerror(errno);
    EXPECT_EQ(mode, want) << "policy of " << p;
    if (want != 0) EXPECT_EQ(nodes, want_nodes) << "nodes of " << p;
    EXPECT_EQ(NodeOfPage(p), 0) << "page of " << p;
  }
  if (want != 0) EXPECT_GT(PartProp(0, "bound_bytes"), 0u);
  else EXPECT_EQ(PartProp(0, "bound_bytes"), 0u);
  const char* policy = getenv("JSMALLOC_TEST_EXPECT_PROCESS_POLICY");
  if (policy != nullptr) EXPECT_EQ(Prop("jsmalloc.numa.process_policy"), std::stoul(policy));
  for (void* p : blocks) free(p);
}

}  // namespace
