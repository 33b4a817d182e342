// tests/vm/vm_probe: what JSMalloc does on this kernel and THP mode, as one
// line for the table in docs/kernels.md (tests/vm/run-guest-tests collects it
// from each guest): hugepage coverage of a dense heap of small objects, what
// that heap and a sparse set of large buffers cost in RSS, and the paths the
// allocator chose (front-end and rseq, io_uring, MADV_COLLAPSE). Then the
// whole stats report. Exit status 0 when every allocation succeeded.
// Run it with JSMALLOC_BACKGROUND=1 JSMALLOC_IO_URING=1 JSMALLOC_COLLAPSE=1 to
// have the optional kernel paths tried.
#include <malloc.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "jsmalloc/jsmalloc.h"

#include "../kernel/process_memory.h"

using jsmalloc_test::RssBytes;
using jsmalloc_test::ThpMode;

namespace {

size_t Prop(const char* name) {
  size_t v = 0;
  if (!jsmalloc_get_numeric_property(name, &v)) return ~size_t{0};
  return v;
}

// AnonHugePages of the whole process (kB in smaps_rollup).
size_t AnonHugeBytes() {
  FILE* f = fopen("/proc/self/smaps_rollup", "r");
  if (f == nullptr) return 0;
  char line[256];
  size_t kb = 0;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "AnonHugePages: %zu kB", &kb) == 1) break;
  }
  fclose(f);
  return kb << 10;
}

// The line of the stats report that starts with `prefix` once its leading
// spaces are trimmed.
std::string ReportLine(const std::string& report, const char* prefix) {
  size_t at = 0;
  while (at < report.size()) {
    size_t end = report.find('\n', at);
    if (end == std::string::npos) end = report.size();
    std::string line = report.substr(at, end - at);
    size_t lead = line.find_first_not_of(' ');
    if (lead != std::string::npos && line.compare(lead, strlen(prefix), prefix) == 0) return line.substr(lead);
    at = end + 1;
  }
  return "-";
}

std::string Inside(const std::string& line, const char* open, char close) {
  size_t a = line.find(open);
  if (a == std::string::npos) return "-";
  a += strlen(open);
  int depth = 0;
  for (size_t i = a; i < line.size(); ++i) {
    if (line[i] == '(') ++depth;
    if (line[i] == close) {
      if (depth == 0) return line.substr(a, i - a);
      --depth;
    }
  }
  return line.substr(a);
}

// Whether /proc/self/maps names any of JSMalloc's mappings "[anon:jsmalloc]"
// (PR_SET_VMA_ANON_NAME; needs CONFIG_ANON_VMA_NAME).
bool MappingsNamed() {
  FILE* f = fopen("/proc/self/maps", "r");
  if (f == nullptr) return false;
  char line[512];
  bool named = false;
  while (!named && fgets(line, sizeof(line), f) != nullptr) named = strstr(line, "[anon:jsmalloc]") != nullptr;
  fclose(f);
  return named;
}

}  // namespace

int main() {
  struct utsname u;
  uname(&u);
  const std::string thp = ThpMode();
  bool ok = true;

  // Dense: 256 MiB of small objects, each written in full.
  const size_t rss0 = RssBytes();
  std::vector<std::pair<char*, size_t>> objs;
  std::mt19937_64 rng(19);
  size_t bytes = 0;
  while (bytes < (size_t{256} << 20)) {
    size_t size = 16 + rng() % (rng() % 8 == 0 ? 4096 : 512);
    char* p = static_cast<char*>(malloc(size));
    if (p == nullptr) {
      ok = false;
      break;
    }
    memset(p, static_cast<int>(size), size);
    objs.emplace_back(p, size);
    bytes += size;
  }
  const size_t cov = Prop("jsmalloc.hugepage_coverage");
  const bool exact = Prop("jsmalloc.hugepage_coverage_exact") == 1;
  const size_t dense_rss = RssBytes() - rss0;
  const size_t dense_thp = AnonHugeBytes();
  for (auto& [p, n] : objs) free(p);
  std::vector<std::pair<char*, size_t>>().swap(objs);
  malloc_trim(0);

  // Sparse: 300 large buffers (1-5 MiB) of which only the first 4 KiB is written.
  const size_t rss1 = RssBytes();
  std::vector<char*> bufs;
  size_t reserved = 0;
  for (int i = 0; i < 300; ++i) {
    size_t size = (size_t{1} << 20) + static_cast<size_t>(i % 5) * (size_t{1} << 20) + 4096 * (i % 7);
    char* p = static_cast<char*>(malloc(size));
    if (p == nullptr) {
      ok = false;
      break;
    }
    memset(p, i, 4096);
    bufs.push_back(p);
    reserved += size;
  }
  const size_t sparse_rss = RssBytes() > rss1 ? RssBytes() - rss1 : 0;
  for (char* p : bufs) free(p);

  // A dense 16 MiB buffer, written in full and kept: on base pages at first
  // (JSMALLOC_LARGE_PAGES=adaptive), the background thread collapses it with
  // MADV_COLLAPSE where the kernel has it. Give the thread (JSMALLOC_BACKGROUND=1)
  // a few cycles, so that this and its madvise path (io_uring or plain) show.
  const size_t kDense = size_t{16} << 20;
  char* dense = static_cast<char*>(malloc(kDense));
  if (dense == nullptr) ok = false;
  else memset(dense, 7, kDense);
  if (getenv("JSMALLOC_BACKGROUND") != nullptr) std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  const size_t dense_huge = AnonHugeBytes();

  std::vector<char> buf(1 << 20);
  jsmalloc_get_stats(buf.data(), buf.size());
  std::string report = std::string("\n") + buf.data();
  std::string first = ReportLine(report, "JSMalloc");
  std::string frontend = Inside(first, "front-end: ", ',');
  std::string background = ReportLine(report, "Background thread:");
  std::string filler = ReportLine(report, "Filler:");
  std::string io = ReportLine(report, "madvise via");
  printf("VMPROBE kernel=%s thp=%s coverage=%.1f%%%s dense_MiB=%zu dense_rss_MiB=%zu dense_anonhuge_MiB=%zu "
         "sparse_reserved_MiB=%zu sparse_rss_MiB=%.1f ok=%d\n",
         u.release, thp.c_str(), cov / 1e4, exact ? "" : "(estimate)", bytes >> 20, dense_rss >> 20,
         dense_thp >> 20, reserved >> 20, sparse_rss / 1048576.0, ok ? 1 : 0);
  printf("VMPROBE paths: per_cpu_caches_active=%zu background_io_uring=%zu hugepage_collapses=%zu\n",
         Prop("jsmalloc.per_cpu_caches_active"), Prop("jsmalloc.background_io_uring"),
         Prop("jsmalloc.hugepage.collapses"));
  printf("VMPROBE frontend: %s\n", frontend.c_str());
  printf("VMPROBE percpu: %s\n", ReportLine(report, "Per-CPU caches:").c_str());
  printf("VMPROBE large_pages: %s\n", ReportLine(report, "Large allocations:").c_str());
  printf("VMPROBE vma_names: %s\n", MappingsNamed() ? "[anon:jsmalloc] in /proc/self/maps"
                                                      : "none (PR_SET_VMA_ANON_NAME refused: mappings unnamed)");
  printf("VMPROBE background: %s\n", background.c_str());
  printf("VMPROBE madvise: %s\n", io.c_str());
  printf("VMPROBE filler: %s\n", filler.c_str());
  printf("VMPROBE large: 16 MiB dense buffer kept, process AnonHugePages now %zu MiB\n", dense_huge >> 20);
  printf("%s\n", buf.data());
  free(dense);
  return ok ? 0 : 1;
}
