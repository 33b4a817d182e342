// The NUMA layer: list parsing, fake sysfs trees, injected topologies, and
// (against this machine's kernel, one node) process state, mbind,
// get_mempolicy and move_pages. Run as root; under numactl set
// JSMALLOC_TEST_EXPECT_POLICY (e.g. "bind:1" = policy bind, node mask 1).
#include "os/linux/numa.h"
#include "os/linux/numa_parse.h"

#include <errno.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace jsmalloc::os {
namespace {

constexpr size_t kRegion = size_t{4} << 20;
constexpr int kWords = kMaxTopologyCpus / 64;

// Compiles only if the constructor is constexpr (the runtime keeps one
// process-wide instance, initialised before any constructor runs).
constinit NumaTopology g_constinit_topology;

bool Parse(const char* s, uint64_t* out, int bits) { return ParseCpuList(s, strlen(s), out, bits); }

uint64_t Parse64(const char* s) {
  uint64_t w = ~0ull;
  EXPECT_TRUE(Parse(s, &w, 64)) << s;
  return w;
}

// Highest CPU in this thread's affinity (what ReadNumaTopology folds into
// num_cpus), and the set itself.
int AffinityHighest(cpu_set_t* set) {
  CPU_ZERO(set);
  if (sched_getaffinity(0, sizeof(*set), set) != 0) return -1;
  int hi = -1;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, set)) hi = c;
  }
  return hi;
}

int AffinityHighest() {
  cpu_set_t set;
  return AffinityHighest(&set);
}

bool IsBit(const uint64_t* words, int bit) { return (words[bit / 64] >> (bit % 64)) & 1; }

std::string ReadText(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

TEST(NumaTopologyParseTest, CpuListRangesAndSingles) {
  EXPECT_EQ(Parse64("0-3,8,10-11"), 0xFull | (1ull << 8) | (3ull << 10));
  EXPECT_EQ(Parse64("0-3,8,10-11\n"), 0xFull | (1ull << 8) | (3ull << 10));
  EXPECT_EQ(Parse64("5"), 1ull << 5);
  EXPECT_EQ(Parse64("2-2"), 1ull << 2);
  EXPECT_EQ(Parse64("63"), 1ull << 63);
  EXPECT_EQ(Parse64("0-63"), ~0ull);
  EXPECT_EQ(Parse64("3,1"), 0xAull);  // order does not matter
}

TEST(NumaTopologyParseTest, CpuListEmptyMeansNoBits) {
  EXPECT_EQ(Parse64(""), 0u);
  EXPECT_EQ(Parse64("\n"), 0u);  // a memory-only node's cpulist
}

TEST(NumaTopologyParseTest, CpuListSpansWordsAndZeroesOutput) {
  uint64_t w[kWords];
  memset(w, 0xAB, sizeof(w));
  ASSERT_TRUE(Parse("63-65,1023\n", w, kMaxTopologyCpus));
  EXPECT_EQ(w[0], 1ull << 63);
  EXPECT_EQ(w[1], 3u);
  for (int i = 2; i < kWords - 1; ++i) EXPECT_EQ(w[i], 0u) << i;
  EXPECT_EQ(w[kWords - 1], 1ull << 63);
}

TEST(NumaTopologyParseTest, CpuListHonoursLength) {
  uint64_t w = 0;
  ASSERT_TRUE(ParseCpuList("0-3,8", 3, &w, 64));  // only "0-3"
  EXPECT_EQ(w, 0xFu);
  ASSERT_TRUE(ParseCpuList("7\0garbage", 9, &w, 64));  // stops at NUL
  EXPECT_EQ(w, 1u << 7);
}

TEST(NumaTopologyParseTest, CpuListRejectsMalformed) {
  const char* bad[] = {"a",   "1-",  "-1",   "3-1",    "1,,2",    ",",        "1,",
                       "1 2", " 1",  "1-2-3", "0x1",   "1:2",     "0-7:2/4",  "1\n2",
                       "1;2", "+1",  "1-a",  "\n1-\n"};
  for (const char* s : bad) {
    uint64_t w = 0;
    EXPECT_FALSE(Parse(s, &w, 64)) << '"' << s << '"';
  }
}

TEST(NumaTopologyParseTest, CpuListRejectsOutOfRange) {
  uint64_t w = 0;
  EXPECT_FALSE(Parse("64", &w, 64));
  EXPECT_FALSE(Parse("0-64", &w, 64));
  EXPECT_FALSE(Parse("1,70-71", &w, 64));
  EXPECT_FALSE(Parse("99999999999999999999999", &w, 64));  // no wrap-around
  uint64_t big[kWords];
  EXPECT_FALSE(Parse("1024", big, kMaxTopologyCpus));
  EXPECT_TRUE(Parse("1023", big, kMaxTopologyCpus));
  EXPECT_FALSE(Parse("0", &w, 0));
}

TEST(NumaTopologyParseTest, StatusHexMask) {
  std::string line;
  for (int i = 0; i < 31; ++i) line += "00000000,";
  line += "00000001\n";  // this kernel's Mems_allowed format (1024 nodes)
  uint64_t v = 0;
  ASSERT_TRUE(ParseStatusHexMask(line.data(), line.size(), &v));
  EXPECT_EQ(v, 1u);
  const char* s = "00000003,00000000,80000001";  // top word dropped
  ASSERT_TRUE(ParseStatusHexMask(s, strlen(s), &v));
  EXPECT_EQ(v, 0x80000001ull);
  s = "ffffffff,0000000F";
  ASSERT_TRUE(ParseStatusHexMask(s, strlen(s), &v));
  EXPECT_EQ(v, 0xffffffff0000000full);
  for (const char* b : {"", "\n", "xyz", "1,,2", "123456789", "1,", ",1", "1 2"}) {
    EXPECT_FALSE(ParseStatusHexMask(b, strlen(b), &v)) << '"' << b << '"';
  }
}

TEST(NumaTopologyParseTest, SysfsListDropsWhatDoesNotFit) {
  uint64_t w = 0;
  ASSERT_TRUE(ParseSysfsCpuList("1,62-70,99\n", 11, &w, 64));
  EXPECT_EQ(w, (1ull << 1) | (3ull << 62));
  EXPECT_FALSE(ParseSysfsCpuList("1,,2", 4, &w, 64));
}

TEST(NumaTopologyParseTest, CpuListHighestHasNoBound) {
  int hi = 0;
  ASSERT_TRUE(ParseCpuListHighest("0-3,8-11\n", 9, &hi));
  EXPECT_EQ(hi, 11);
  ASSERT_TRUE(ParseCpuListHighest("4095,7", 6, &hi));
  EXPECT_EQ(hi, 4095);
  ASSERT_TRUE(ParseCpuListHighest("\n", 1, &hi));
  EXPECT_EQ(hi, -1);
  EXPECT_FALSE(ParseCpuListHighest("0-", 2, &hi));
  EXPECT_FALSE(ParseCpuListHighest("99999999999", 11, &hi));
}

TEST(NumaTopologyParseTest, WholeListEntriesCutsAtTheLastComma) {
  EXPECT_EQ(WholeListEntries("0-3,8-1", 7), 3u);
  EXPECT_EQ(WholeListEntries("0-3", 3), 0u);
  EXPECT_EQ(WholeListEntries("1,2,", 4), 3u);
}

TEST(NumaTopologyParseTest, MemsAllowedLine) {
  uint64_t v = 0;
  const char* line = "Mems_allowed:\t00000000,00000005";
  ASSERT_TRUE(ParseMemsAllowedLine(line, strlen(line), &v));
  EXPECT_EQ(v, 5u);
  line = "Mems_allowed_list:\t0,2";
  EXPECT_FALSE(ParseMemsAllowedLine(line, strlen(line), &v));
  line = "Cpus_allowed:\tff";
  EXPECT_FALSE(ParseMemsAllowedLine(line, strlen(line), &v));
  EXPECT_FALSE(ParseMemsAllowedLine("Mems_allowed:", 13, &v));
}

TEST(NumaTopologyParseTest, KernelModes) {
  EXPECT_EQ(MemPolicyFromKernel(2), MemPolicy::kBind);
  EXPECT_EQ(MemPolicyFromKernel(3 | (1 << 15)), MemPolicy::kInterleave) << "mode flags ignored";
  EXPECT_EQ(MemPolicyFromKernel(6), MemPolicy::kWeightedInterleave);
  EXPECT_EQ(MemPolicyFromKernel(7), MemPolicy::kUnknown);
}

TEST(NumaTopologyParseTest, PolicyNames) {
  EXPECT_STREQ(MemPolicyName(MemPolicy::kDefault), "default");
  EXPECT_STREQ(MemPolicyName(MemPolicy::kPreferred), "preferred");
  EXPECT_STREQ(MemPolicyName(MemPolicy::kBind), "bind");
  EXPECT_STREQ(MemPolicyName(MemPolicy::kInterleave), "interleave");
  EXPECT_STREQ(MemPolicyName(MemPolicy::kLocal), "local");
  EXPECT_STREQ(MemPolicyName(MemPolicy::kPreferredMany), "preferred-many");
  EXPECT_STREQ(MemPolicyName(MemPolicy::kWeightedInterleave), "weighted-interleave");
  EXPECT_STREQ(MemPolicyName(MemPolicy::kUnknown), "unknown");
  EXPECT_STREQ(MemPolicyName(static_cast<MemPolicy>(42)), "unknown");
}

TEST(NumaTopologyParseTest, DefaultsAndAccessors) {
  EXPECT_EQ(g_constinit_topology.num_cpus, 0);
  EXPECT_EQ(g_constinit_topology.cpu_node[0], -1);
  EXPECT_EQ(g_constinit_topology.cpu_node[kMaxTopologyCpus - 1], -1);
  EXPECT_EQ(g_constinit_topology.mems_allowed, ~0ull);
  NumaTopology t;
  t.num_cpus = 3;
  t.cpu_node[1] = 2;
  t.cpus_allowed[0] = 2;
  t.cpus_allowed[kWords - 1] = 1ull << 63;
  EXPECT_EQ(t.NodeOfCpu(1), 2);
  EXPECT_EQ(t.NodeOfCpu(0), -1);
  EXPECT_EQ(t.NodeOfCpu(3), -1);  // beyond num_cpus
  EXPECT_EQ(t.NodeOfCpu(-1), -1);
  EXPECT_EQ(t.NodeOfCpu(kMaxTopologyCpus), -1);
  EXPECT_TRUE(t.AllowsCpu(1));
  EXPECT_FALSE(t.AllowsCpu(0));
  EXPECT_TRUE(t.AllowsCpu(kMaxTopologyCpus - 1));
  EXPECT_FALSE(t.AllowsCpu(kMaxTopologyCpus));
  EXPECT_FALSE(t.AllowsCpu(-1));
}

// A fake /sys/devices/system/node under a fresh /tmp directory.
class NumaTopologySysfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/jsmalloc_numa_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << strerror(errno);
    root_ = tmpl;
    dir_ = root_ + "/node";
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (!root_.empty()) std::filesystem::remove_all(root_);
  }
  void Write(const std::string& rel, const std::string& text) {
    std::filesystem::path p = std::filesystem::path(dir_) / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream f(p);
    f << text;
    ASSERT_TRUE(f.good()) << p;
  }
  static int ExpectedCpus(int highest_listed) {
    int aff = AffinityHighest();
    return (highest_listed > aff ? highest_listed : aff) + 1;
  }
  std::string root_, dir_;
};

TEST_F(NumaTopologySysfsTest, TwoNodes) {
  Write("online", "0-1\n");
  Write("has_memory", "0-1\n");
  Write("node0/cpulist", "0-1\n");
  Write("node1/cpulist", "2-3\n");
  NumaTopology t;
  ASSERT_TRUE(ReadNumaTopology(dir_.c_str(), &t));
  EXPECT_EQ(t.num_nodes, 2);
  EXPECT_EQ(t.nodes_online, 3u);
  EXPECT_EQ(t.nodes_with_memory, 3u);
  EXPECT_EQ(t.num_cpus, ExpectedCpus(3));
  EXPECT_EQ(t.NodeOfCpu(0), 0);
  EXPECT_EQ(t.NodeOfCpu(1), 0);
  EXPECT_EQ(t.NodeOfCpu(2), 1);
  EXPECT_EQ(t.NodeOfCpu(3), 1);
  EXPECT_EQ(t.cpu_node[4], -1);
  EXPECT_FALSE(t.injected);
}

// Four nodes; node 2 has memory but no CPU (empty cpulist); no has_memory
// file, so every online node counts as having memory; CPUs 10-11 belong to
// no node.
TEST_F(NumaTopologySysfsTest, FourNodesWithMemoryOnlyNodeAndNoHasMemory) {
  Write("online", "0-3\n");
  Write("node0/cpulist", "0-3\n");
  Write("node1/cpulist", "4-7\n");
  Write("node2/cpulist", "\n");
  Write("node3/cpulist", "8-9,12\n");
  NumaTopology t;
  ASSERT_TRUE(ReadNumaTopology(dir_.c_str(), &t));
  EXPECT_EQ(t.num_nodes, 4);
  EXPECT_EQ(t.nodes_online, 0xFu);
  EXPECT_EQ(t.nodes_with_memory, 0xFu);
  EXPECT_EQ(t.num_cpus, ExpectedCpus(12));
  const int expect[13] = {0, 0, 0, 0, 1, 1, 1, 1, 3, 3, -1, -1, 3};
  for (int c = 0; c < 13; ++c) EXPECT_EQ(t.NodeOfCpu(c), expect[c]) << "cpu " << c;
  for (int c = 0; c < t.num_cpus; ++c) EXPECT_NE(t.NodeOfCpu(c), 2) << "node 2 has no CPU";
}

TEST_F(NumaTopologySysfsTest, HasMemorySubsetAndSparseNodeIds) {
  Write("online", "0,2-3\n");  // node 1 absent
  Write("has_memory", "0,3\n");
  Write("node0/cpulist", "0\n");
  Write("node2/cpulist", "1\n");  // CPU-only node
  Write("node3/cpulist", "\n");   // memory-only node
  NumaTopology t;
  ASSERT_TRUE(ReadNumaTopology(dir_.c_str(), &t));
  EXPECT_EQ(t.num_nodes, 4);
  EXPECT_EQ(t.nodes_online, 0b1101u);
  EXPECT_EQ(t.nodes_with_memory, 0b1001u);
  EXPECT_EQ(t.NodeOfCpu(0), 0);
  EXPECT_EQ(t.NodeOfCpu(1), 2);
  EXPECT_EQ(t.num_cpus, ExpectedCpus(1));
}

// Without an "online" file (or an unreadable one) the nodeN directories
// that have a cpulist are the nodes.
TEST_F(NumaTopologySysfsTest, ProbesNodeDirsWithoutOnlineFile) {
  Write("node0/cpulist", "0-1\n");
  Write("node1/cpulist", "2\n");
  Write("node5/cpulist", "3\n");
  NumaTopology t;
  ASSERT_TRUE(ReadNumaTopology(dir_.c_str(), &t));
  EXPECT_EQ(t.nodes_online, (1u << 0) | (1u << 1) | (1u << 5));
  EXPECT_EQ(t.nodes_with_memory, t.nodes_online);
  EXPECT_EQ(t.num_nodes, 6);
  EXPECT_EQ(t.NodeOfCpu(2), 1);
  EXPECT_EQ(t.NodeOfCpu(3), 5);

  Write("online", "garbage\n");
  ASSERT_TRUE(ReadNumaTopology(dir_.c_str(), &t));
  EXPECT_EQ(t.nodes_online, (1u << 0) | (1u << 1) | (1u << 5));
}

// Reading resets what a previous read left behind.
TEST_F(NumaTopologySysfsTest, ReadResetsTopology) {
  Write("online", "0\n");
  Write("node0/cpulist", "0-1\n");
  NumaTopology t;
  ASSERT_TRUE(ParseNumaTopologySpec("0-99;100-199", &t));
  ASSERT_TRUE(ReadNumaTopology(dir_.c_str(), &t));
  EXPECT_FALSE(t.injected);
  EXPECT_EQ(t.num_nodes, 1);
  EXPECT_EQ(t.cpu_node[150], -1);
  EXPECT_EQ(t.num_cpus, ExpectedCpus(1));
}

// No node directory (kernel without NUMA): one node 0 holding every
// possible CPU.
TEST_F(NumaTopologySysfsTest, MissingDirectoryFallsBackToOneNode) {
  std::string missing = root_ + "/no-such-dir";
  NumaTopology t;
  ASSERT_TRUE(ReadNumaTopology(missing.c_str(), &t));
  EXPECT_EQ(t.num_nodes, 1);
  EXPECT_EQ(t.nodes_online, 1u);
  EXPECT_EQ(t.nodes_with_memory, 1u);
  std::string possible = ReadText("/sys/devices/system/cpu/possible");
  uint64_t want[kWords];
  ASSERT_TRUE(ParseCpuList(possible.data(), possible.size(), want, kMaxTopologyCpus)) << possible;
  int highest = -1;
  for (int c = 0; c < kMaxTopologyCpus; ++c) {
    if (IsBit(want, c)) {
      EXPECT_EQ(t.NodeOfCpu(c), 0) << "cpu " << c;
      highest = c;
    } else {
      EXPECT_EQ(t.cpu_node[c], -1) << "cpu " << c;
    }
  }
  ASSERT_GE(highest, 0);
  EXPECT_EQ(t.num_cpus, ExpectedCpus(highest));
  // Same for an empty directory.
  ASSERT_TRUE(ReadNumaTopology(dir_.c_str(), &t));
  EXPECT_EQ(t.nodes_online, 1u);
  EXPECT_EQ(t.NodeOfCpu(0), 0);
}

TEST(NumaTopologyMachineTest, ReadsThisMachine) {
  NumaTopology t;
  ASSERT_TRUE(ReadNumaTopology("/sys/devices/system/node", &t));
  EXPECT_TRUE(t.nodes_online & 1);
  EXPECT_TRUE(t.nodes_with_memory & 1);
  EXPECT_GE(t.num_nodes, 1);
  std::string node0 = ReadText("/sys/devices/system/node/node0/cpulist");
  uint64_t cpus[kWords];
  ASSERT_TRUE(ParseCpuList(node0.data(), node0.size(), cpus, kMaxTopologyCpus)) << node0;
  for (int c = 0; c < kMaxTopologyCpus; ++c) {
    if (IsBit(cpus, c)) {
      EXPECT_EQ(t.NodeOfCpu(c), 0) << "cpu " << c;
    }
  }
  cpu_set_t set;
  int hi = AffinityHighest(&set);
  ASSERT_GE(hi, 0);
  EXPECT_GE(t.num_cpus, hi + 1);
  for (int c = 0; c <= hi; ++c) {
    if (CPU_ISSET(c, &set)) {
      EXPECT_GE(t.NodeOfCpu(c), 0) << "allowed cpu " << c << " has no node";
    }
  }
  int cpu = CurrentCpuSlow();
  ASSERT_GE(cpu, 0);
  EXPECT_LT(cpu, t.num_cpus);
  EXPECT_GE(t.NodeOfCpu(cpu), 0);
}

TEST(NumaTopologySpecTest, TwoNodes) {
  NumaTopology t;
  ASSERT_TRUE(ParseNumaTopologySpec("0;1", &t));
  EXPECT_TRUE(t.injected);
  EXPECT_EQ(t.num_nodes, 2);
  EXPECT_EQ(t.num_cpus, 2);
  EXPECT_EQ(t.NodeOfCpu(0), 0);
  EXPECT_EQ(t.NodeOfCpu(1), 1);
  EXPECT_EQ(t.nodes_online, 3u);
  EXPECT_EQ(t.nodes_with_memory, 3u);
  EXPECT_EQ(t.mems_allowed, 3u);
  EXPECT_EQ(t.cpus_allowed[0], 3u);
  EXPECT_EQ(t.nodes_of_allowed_cpus, 3u);
  EXPECT_EQ(t.policy, MemPolicy::kDefault);
  EXPECT_EQ(t.policy_nodes, 0u);
}

TEST(NumaTopologySpecTest, FourNodes) {
  NumaTopology t;
  ASSERT_TRUE(ParseNumaTopologySpec("0-3;4-7;8-11;12-15", &t));
  EXPECT_EQ(t.num_nodes, 4);
  EXPECT_EQ(t.num_cpus, 16);
  for (int c = 0; c < 16; ++c) EXPECT_EQ(t.NodeOfCpu(c), c / 4) << c;
  EXPECT_EQ(t.NodeOfCpu(16), -1);
  EXPECT_EQ(t.nodes_online, 0xFu);
  EXPECT_EQ(t.cpus_allowed[0], 0xFFFFu);
  EXPECT_EQ(t.nodes_of_allowed_cpus, 0xFu);
}

TEST(NumaTopologySpecTest, EightNodesSparseCpus) {
  NumaTopology t;
  ASSERT_TRUE(ParseNumaTopologySpec("0,8;1,9;2,10;3,11;4,12;5,13;6,14;7,15", &t));
  EXPECT_EQ(t.num_nodes, 8);
  EXPECT_EQ(t.num_cpus, 16);
  for (int c = 0; c < 16; ++c) EXPECT_EQ(t.NodeOfCpu(c), c % 8) << c;
  EXPECT_EQ(t.nodes_online, 0xFFu);
  EXPECT_EQ(t.nodes_with_memory, 0xFFu);
  EXPECT_EQ(t.mems_allowed, 0xFFu);
  EXPECT_EQ(t.nodes_of_allowed_cpus, 0xFFu);
}

TEST(NumaTopologySpecTest, MemoryOnlyNodes) {
  NumaTopology t;
  ASSERT_TRUE(ParseNumaTopologySpec("0-1;", &t));
  EXPECT_EQ(t.num_nodes, 2);
  EXPECT_EQ(t.nodes_with_memory, 3u);
  EXPECT_EQ(t.nodes_of_allowed_cpus, 1u);  // node 1 has no CPU
  EXPECT_EQ(t.num_cpus, 2);
  ASSERT_TRUE(ParseNumaTopologySpec(";0;;1\n", &t));  // trailing newline tolerated
  EXPECT_EQ(t.num_nodes, 4);
  EXPECT_EQ(t.NodeOfCpu(0), 1);
  EXPECT_EQ(t.NodeOfCpu(1), 3);
  EXPECT_EQ(t.nodes_of_allowed_cpus, 0b1010u);
}

TEST(NumaTopologySpecTest, SixtyFourNodesButNotSixtyFive) {
  std::string spec;
  for (int n = 0; n < kMaxNumaNodes; ++n) spec += (n ? ";" : "") + std::to_string(n);
  NumaTopology t;
  ASSERT_TRUE(ParseNumaTopologySpec(spec.c_str(), &t));
  EXPECT_EQ(t.num_nodes, 64);
  EXPECT_EQ(t.nodes_online, ~0ull);
  EXPECT_EQ(t.NodeOfCpu(63), 63);
  spec += ";64";
  EXPECT_FALSE(ParseNumaTopologySpec(spec.c_str(), &t));
  EXPECT_FALSE(t.injected);
  EXPECT_EQ(t.num_nodes, 0);
}

TEST(NumaTopologySpecTest, RejectsMalformed) {
  const char* bad[] = {"",      ";",     ";;",   "0;;x", "0-",     "0;0",      "0-3;3-4",
                       "1024",  "0;1024", "a;b",  "0,;1", "0 ;1",   "0-1:2/1",  "\n"};
  for (const char* s : bad) {
    NumaTopology t;
    t.num_nodes = 7;
    EXPECT_FALSE(ParseNumaTopologySpec(s, &t)) << '"' << s << '"';
    EXPECT_FALSE(t.injected) << s;
    EXPECT_EQ(t.num_nodes, 0) << "reset on failure: " << s;
    EXPECT_EQ(t.cpu_node[0], -1) << s;
  }
  NumaTopology t;
  EXPECT_FALSE(ParseNumaTopologySpec(nullptr, &t));
}

// Injected nodes are fictional: only the (real) affinity is read.
TEST(NumaTopologySpecTest, ProcessStateKeepsInjectedNodes) {
  NumaTopology t;
  ASSERT_TRUE(ParseNumaTopologySpec("0;1;;", &t));
  ReadProcessNumaState(&t);
  EXPECT_TRUE(t.injected);
  EXPECT_EQ(t.mems_allowed, 0xFu);
  EXPECT_EQ(t.policy, MemPolicy::kDefault);
  cpu_set_t set;
  ASSERT_GE(AffinityHighest(&set), 0);
  uint64_t want_nodes = 0;
  for (int c = 0; c < kMaxTopologyCpus; ++c) {
    EXPECT_EQ(t.AllowsCpu(c), CPU_ISSET(c, &set) != 0) << c;
    if (c < 2 && CPU_ISSET(c, &set)) want_nodes |= 1u << c;
  }
  EXPECT_EQ(t.nodes_of_allowed_cpus, want_nodes);
}

// Parses JSMALLOC_TEST_EXPECT_POLICY ("bind:1" = policy bind, node mask 1;
// "interleave" = policy only).
bool ExpectedPolicy(std::string* name, bool* has_mask, uint64_t* mask) {
  const char* env = getenv("JSMALLOC_TEST_EXPECT_POLICY");
  if (env == nullptr) return false;
  std::string v = env;
  size_t colon = v.find(':');
  *name = v.substr(0, colon);
  *has_mask = colon != std::string::npos;
  if (*has_mask) *mask = strtoull(v.c_str() + colon + 1, nullptr, 0);
  return true;
}

TEST(NumaTopologyProcessTest, ReadsThisProcess) {
  NumaTopology t;
  ASSERT_TRUE(ReadNumaTopology("/sys/devices/system/node", &t));
  ReadProcessNumaState(&t);
  int cpu = CurrentCpuSlow();
  ASSERT_GE(cpu, 0);
  EXPECT_TRUE(t.AllowsCpu(cpu)) << "cpu " << cpu;
  int node = t.NodeOfCpu(cpu);
  ASSERT_GE(node, 0);
  EXPECT_TRUE((t.nodes_of_allowed_cpus >> node) & 1);
  EXPECT_TRUE(t.mems_allowed & 1) << std::hex << t.mems_allowed;
  EXPECT_EQ(t.mems_allowed & ~t.nodes_online, 0u) << std::hex << t.mems_allowed;
  // Cross-check /proc/self/status against get_mempolicy(MPOL_F_MEMS_ALLOWED).
  int mode = -1;
  unsigned long mems[16] = {};
  ASSERT_EQ(syscall(SYS_get_mempolicy, &mode, mems, 1025UL, nullptr, 4UL), 0) << strerror(errno);
  EXPECT_EQ(t.mems_allowed, mems[0]);

  std::string name;
  bool has_mask = false;
  uint64_t mask = 0;
  if (ExpectedPolicy(&name, &has_mask, &mask)) {
    if (!name.empty()) {
      EXPECT_STREQ(MemPolicyName(t.policy), name.c_str());
    }
    if (has_mask) {
      EXPECT_EQ(t.policy_nodes, mask);
    }
  } else {
    EXPECT_EQ(t.policy, MemPolicy::kDefault) << MemPolicyName(t.policy);
    EXPECT_EQ(t.policy_nodes, 0u);
  }
}

// The task policy is per thread: set one in a fresh thread and read it back.
TEST(NumaTopologyProcessTest, ReadsThreadPolicy) {
  struct Case {
    MemPolicy mode;
    uint64_t nodes;
    int mode_flags;  // the kernel reports these back ORed into the mode
  };
  constexpr int kStaticNodes = 1 << 15, kRelativeNodes = 1 << 14;
  for (Case c : {Case{MemPolicy::kBind, 1, 0}, Case{MemPolicy::kPreferred, 1, 0},
                 Case{MemPolicy::kInterleave, 1, 0}, Case{MemPolicy::kLocal, 0, 0},
                 Case{MemPolicy::kBind, 1, kStaticNodes},
                 Case{MemPolicy::kInterleave, 1, kRelativeNodes}}) {
    NumaTopology t;
    ASSERT_TRUE(ReadNumaTopology("/sys/devices/system/node", &t));
    long rc = -1;
    int err = 0;
    std::thread th([&] {
      unsigned long mask = c.nodes;
      rc = syscall(SYS_set_mempolicy, static_cast<int>(c.mode) | c.mode_flags,
                   c.nodes ? &mask : nullptr, c.nodes ? 65UL : 0UL);
      err = errno;
      if (rc == 0) ReadProcessNumaState(&t);
    });
    th.join();
    ASSERT_EQ(rc, 0) << MemPolicyName(c.mode) << "|" << c.mode_flags << ": " << strerror(err);
    EXPECT_EQ(t.policy, c.mode) << MemPolicyName(t.policy);
    EXPECT_EQ(t.policy_nodes, c.nodes) << MemPolicyName(c.mode);
  }
}

class NumaTopologyBindTest : public ::testing::Test {
 protected:
  void SetUp() override {
    void* p = mmap(nullptr, kRegion, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    mem_ = static_cast<char*>(p);
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  }
  void TearDown() override {
    if (mem_ != nullptr) munmap(mem_, kRegion);
  }
  char* mem_ = nullptr;
  size_t page_ = 4096;
};

TEST_F(NumaTopologyBindTest, FreshMappingHasDefaultPolicy) {
  MemPolicy mode = MemPolicy::kUnknown;
  uint64_t nodes = ~0ull;
  ASSERT_TRUE(AddressPolicy(mem_, &mode, &nodes));
  EXPECT_EQ(mode, MemPolicy::kDefault);
  EXPECT_EQ(nodes, 0u);
}

TEST_F(NumaTopologyBindTest, PreferredNodeZero) {
  ASSERT_EQ(BindMemory(mem_, kRegion, MemPolicy::kPreferred, 1), 0);
  MemPolicy mode = MemPolicy::kUnknown;
  uint64_t nodes = 0;
  ASSERT_TRUE(AddressPolicy(mem_ + kRegion / 2, &mode, &nodes));
  EXPECT_EQ(mode, MemPolicy::kPreferred) << MemPolicyName(mode);
  EXPECT_EQ(nodes, 1u);
  mem_[0] = 1;  // fault in the first page
  EXPECT_EQ(NodeOfPage(mem_), 0);
  EXPECT_EQ(NodeOfPage(mem_ + 100), 0);  // any address within the page
  // The last page is more than a hugepage away, so even THP "always" has
  // not faulted it in.
  EXPECT_LT(NodeOfPage(mem_ + kRegion - page_), 0);
}

TEST_F(NumaTopologyBindTest, BindNodeZero) {
  ASSERT_EQ(BindMemory(mem_, kRegion, MemPolicy::kBind, 1), 0);
  MemPolicy mode = MemPolicy::kUnknown;
  uint64_t nodes = 0;
  ASSERT_TRUE(AddressPolicy(mem_, &mode, &nodes));
  EXPECT_EQ(mode, MemPolicy::kBind) << MemPolicyName(mode);
  EXPECT_EQ(nodes, 1u);
  memset(mem_ + kRegion - page_, 1, page_);
  EXPECT_EQ(NodeOfPage(mem_ + kRegion - page_), 0);
  // Back to default.
  ASSERT_EQ(BindMemory(mem_, kRegion, MemPolicy::kDefault, 0), 0);
  ASSERT_TRUE(AddressPolicy(mem_, &mode, &nodes));
  EXPECT_EQ(mode, MemPolicy::kDefault) << MemPolicyName(mode);
  EXPECT_EQ(nodes, 0u);
}

// mbind on part of a mapping splits the VMA: the rest keeps no policy.
TEST_F(NumaTopologyBindTest, PartialRangeAndOtherModes) {
  ASSERT_EQ(BindMemory(mem_ + kRegion / 2, kRegion / 2, MemPolicy::kInterleave, 1), 0);
  MemPolicy mode = MemPolicy::kUnknown;
  uint64_t nodes = 0;
  ASSERT_TRUE(AddressPolicy(mem_, &mode, &nodes));
  EXPECT_EQ(mode, MemPolicy::kDefault) << MemPolicyName(mode);
  ASSERT_TRUE(AddressPolicy(mem_ + kRegion / 2, &mode, &nodes));
  EXPECT_EQ(mode, MemPolicy::kInterleave) << MemPolicyName(mode);
  EXPECT_EQ(nodes, 1u);

  ASSERT_EQ(BindMemory(mem_, kRegion / 2, MemPolicy::kPreferredMany, 1), 0);
  ASSERT_TRUE(AddressPolicy(mem_, &mode, &nodes));
  EXPECT_EQ(mode, MemPolicy::kPreferredMany) << MemPolicyName(mode);
  EXPECT_EQ(nodes, 1u);

  ASSERT_EQ(BindMemory(mem_, kRegion / 2, MemPolicy::kLocal, 0), 0);
  ASSERT_TRUE(AddressPolicy(mem_, &mode, &nodes));
  EXPECT_EQ(mode, MemPolicy::kLocal) << MemPolicyName(mode);
  EXPECT_EQ(nodes, 0u);
}

TEST_F(NumaTopologyBindTest, WeightedInterleave) {
  utsname u;
  ASSERT_EQ(uname(&u), 0);
  int major = 0, minor = 0;
  sscanf(u.release, "%d.%d", &major, &minor);
  if (major < 6 || (major == 6 && minor < 9)) GTEST_SKIP() << "needs Linux 6.9, have " << u.release;
  ASSERT_EQ(BindMemory(mem_, kRegion, MemPolicy::kWeightedInterleave, 1), 0);
  MemPolicy mode = MemPolicy::kUnknown;
  uint64_t nodes = 0;
  ASSERT_TRUE(AddressPolicy(mem_, &mode, &nodes));
  EXPECT_EQ(mode, MemPolicy::kWeightedInterleave) << MemPolicyName(mode);
  EXPECT_EQ(nodes, 1u);
}

TEST_F(NumaTopologyBindTest, UntouchedPageHasNoNode) {
  EXPECT_LT(NodeOfPage(mem_), 0);
  // -ENOENT, or -EFAULT where no page table covers the page yet: move_pages
  // says so up to at least 6.1 (Debian 12's kernel, tests/vm); 6.18 -ENOENT.
  int r = NodeOfPage(mem_ + kRegion - page_);
  EXPECT_TRUE(r == -ENOENT || r == -EFAULT) << r;
}

TEST_F(NumaTopologyBindTest, RejectsMissingNodesAndBadArguments) {
  // This machine has only node 0.
  NumaTopology t;
  ASSERT_TRUE(ReadNumaTopology("/sys/devices/system/node", &t));
  if ((t.nodes_online >> 5) & 1) GTEST_SKIP() << "node 5 exists here";
  errno = 1234;
  EXPECT_EQ(BindMemory(mem_, kRegion, MemPolicy::kPreferred, 1u << 5), EINVAL);
  EXPECT_EQ(errno, 1234) << "errno preserved";
  EXPECT_EQ(BindMemory(mem_, kRegion, MemPolicy::kBind, 1u << 5), EINVAL);
  EXPECT_EQ(BindMemory(mem_, kRegion, MemPolicy::kInterleave, 1ull << 63), EINVAL);
  EXPECT_EQ(BindMemory(mem_, kRegion, MemPolicy::kBind, 0), EINVAL);
  EXPECT_EQ(BindMemory(mem_, kRegion, MemPolicy::kPreferred, 0), EINVAL);
  EXPECT_EQ(BindMemory(mem_, kRegion, MemPolicy::kDefault, 1), EINVAL);
  EXPECT_EQ(BindMemory(mem_, kRegion, MemPolicy::kUnknown, 1), EINVAL);
  EXPECT_EQ(BindMemory(mem_ + 1, page_, MemPolicy::kBind, 1), EINVAL);  // unaligned
  // None of that changed the mapping's policy.
  MemPolicy mode = MemPolicy::kUnknown;
  uint64_t nodes = ~0ull;
  ASSERT_TRUE(AddressPolicy(mem_, &mode, &nodes));
  EXPECT_EQ(mode, MemPolicy::kDefault);
}

TEST_F(NumaTopologyBindTest, UnmappedAddress) {
  char* gone = mem_ + kRegion - page_;
  ASSERT_EQ(munmap(gone, page_), 0);
  MemPolicy mode = MemPolicy::kUnknown;
  uint64_t nodes = 0;
  errno = 0;
  EXPECT_FALSE(AddressPolicy(gone, &mode, &nodes));
  EXPECT_EQ(errno, 0);
  EXPECT_EQ(mode, MemPolicy::kUnknown);  // untouched on failure
  EXPECT_EQ(NodeOfPage(gone), -EFAULT);
  EXPECT_EQ(BindMemory(gone, page_, MemPolicy::kBind, 1), EFAULT);
}

TEST(NumaTopologyCpuTest, CurrentCpuIsAllowed) {
  cpu_set_t set;
  int hi = AffinityHighest(&set);
  ASSERT_GE(hi, 0);
  int cpu = CurrentCpuSlow();
  ASSERT_GE(cpu, 0);
  EXPECT_LE(cpu, hi);
  EXPECT_TRUE(CPU_ISSET(cpu, &set));
}

}  // namespace
}  // namespace jsmalloc::os
