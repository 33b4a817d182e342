// The demo's workload: an in-memory key-value cache service, the kind of
// latency-sensitive program JSMalloc is meant for, with a heap of a few GiB so
// that TLB reach matters. Linked with nothing of JSMalloc: scripts/demo runs
// it under each allocator through LD_PRELOAD.
//
// Phases:
//   load    worker threads fill the cache to its byte capacity;
//   serve   each worker serves a deterministic stream of requests back to back
//           and times every one: GET (copy the value into a response; a miss
//           fills the entry, as a cache-aside client would), SET, DELETE and a
//           rare multi-GET that builds a large response (tens of KiB to about
//           a MiB). Keys are skewed (a hot tenth gets half the traffic), values
//           16 B .. 64 KiB, skewed small; shards are shared, so threads free
//           each other's memory when they evict;
//   shrink  the service drops three quarters of its entries and idles, as a
//           cache does when traffic moves away; RSS is read at the end.
// Every GET checks the id and version stamped in the value it read, and one
// in 64 checks every byte. The checksum covers the request stream only, so it
// is the same under every allocator (hits depend on eviction timing).
//
// Prints a summary and one line "RESULT {json}" for scripts/demo.
//
// kv_cache [--threads N] [--requests N] [--capacity-mib N] [--idle-seconds S] [--seed N]
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../lib/latency.h"
#include "../workloads/common.h"

namespace {

uint64_t SplitMix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Value sizes: mostly small, a long tail up to 64 KiB (like a real cache).
size_t ValueSize(uint64_t r) {
  unsigned bucket = r % 100;
  r >>= 8;
  if (bucket < 60) return 16 + r % 112;        // 16..127
  if (bucket < 85) return 128 + r % 896;       // 128..1023
  if (bucket < 97) return 1024 + r % 7168;     // 1..8 KiB
  return 8192 + r % 57344;                     // 8..64 KiB
}
constexpr double kMeanValueSize = 0.60 * 71.5 + 0.25 * 575.5 + 0.12 * 4607.5 + 0.03 * 36863.5;

// The value's bytes are a function of (key id, version); its first 16 bytes
// (when it has them) hold the id and version, so a GET can check what it read.
void FillValue(std::string* v, uint64_t id, uint32_t version, size_t size) {
  v->resize(size);
  char* d = v->data();
  uint64_t s = id * 1000003 + version;
  for (size_t i = 0; i < size; i += 8) {
    uint64_t w = SplitMix(s);
    memcpy(d + i, &w, size - i < 8 ? size - i : 8);
  }
  if (size >= 16) {
    memcpy(d, &id, 8);
    uint64_t ver = version;
    memcpy(d + 8, &ver, 8);
  }
}

bool CheckValue(const std::string& v, uint64_t id, uint32_t version, bool every_byte, std::string* scratch) {
  if (v.size() >= 16) {
    uint64_t got_id, got_ver;
    memcpy(&got_id, v.data(), 8);
    memcpy(&got_ver, v.data() + 8, 8);
    if (got_id != id || got_ver != version) return false;
  }
  if (!every_byte && v.size() >= 16) return true;
  FillValue(scratch, id, version, v.size());
  return *scratch == v;
}

struct Entry {
  std::string value;
  uint32_t version;
  std::list<uint64_t>::iterator lru;
};

class Shard {
 public:
  explicit Shard(size_t capacity) : capacity_(capacity) {}

  // Copies the value into *out; returns its version, 0 on a miss.
  uint32_t Get(uint64_t id, std::string* out) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = map_.find(id);
    if (it == map_.end()) return 0;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    out->assign(it->second.value);
    return it->second.version;
  }

  void Set(uint64_t id, uint32_t version, std::string&& value) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = map_.find(id);
    if (it != map_.end()) {
      bytes_ += value.size();
      bytes_ -= it->second.value.size();
      it->second.value = std::move(value);
      it->second.version = version;
      lru_.splice(lru_.begin(), lru_, it->second.lru);
    } else {
      lru_.push_front(id);
      bytes_ += kEntryOverhead + value.size();
      map_.emplace(id, Entry{std::move(value), version, lru_.begin()});
    }
    while (bytes_ > capacity_ && !lru_.empty()) {
      auto victim = map_.find(lru_.back());
      bytes_ -= kEntryOverhead + victim->second.value.size();
      map_.erase(victim);
      lru_.pop_back();
    }
  }

  void Delete(uint64_t id) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = map_.find(id);
    if (it == map_.end()) return;
    bytes_ -= kEntryOverhead + it->second.value.size();
    lru_.erase(it->second.lru);
    map_.erase(it);
  }

  size_t Size() {
    std::lock_guard<std::mutex> g(mu_);
    return map_.size();
  }

 private:
  static constexpr size_t kEntryOverhead = 64;  // key, map node, LRU node
  std::mutex mu_;
  size_t capacity_;
  size_t bytes_ = 0;
  std::unordered_map<uint64_t, Entry> map_;
  std::list<uint64_t> lru_;
};

struct Worker {
  bench::LatencyHistogram latency;
  uint64_t served = 0, gets = 0, hits = 0, sets = 0, deletes = 0, mgets = 0, mget_bytes = 0;
  uint64_t checksum = 0, bad = 0, largest_response = 0;
};

size_t ResidentBytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  fclose(f);
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// AnonHugePages / Anonymous of the whole process, from smaps_rollup.
double HugepageCoverage(size_t* anon_out) {
  FILE* f = fopen("/proc/self/smaps_rollup", "r");
  if (f == nullptr) return 0;
  char line[256];
  size_t anon = 0, huge = 0, v;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "Anonymous: %zu kB", &v) == 1) anon = v;
    if (sscanf(line, "AnonHugePages: %zu kB", &v) == 1) huge = v;
  }
  fclose(f);
  *anon_out = anon << 10;
  return anon ? static_cast<double>(huge) / static_cast<double>(anon) : 0.0;
}

// Which allocator serves this process: a preloaded or linked library.
std::string AllocatorInUse() {
  FILE* f = fopen("/proc/self/maps", "r");
  if (f == nullptr) return "unknown";
  char line[4096];
  std::string found = "glibc";
  while (fgets(line, sizeof(line), f) != nullptr) {
    for (const char* lib : {"libjsmalloc", "libjemalloc", "libtcmalloc", "libmimalloc"}) {
      if (strstr(line, lib) != nullptr) found = lib + 3;
    }
  }
  fclose(f);
  return found;
}

[[noreturn]] void Usage(int code) {
  fprintf(code == 0 ? stdout : stderr,
          "usage: kv_cache [--threads N] [--requests N] [--capacity-mib N] [--idle-seconds S] [--seed N]\n"
          "  --threads N        worker threads (default: the CPUs this process may use)\n"
          "  --requests N       requests served in the serve phase, all threads together (default 6000000)\n"
          "  --capacity-mib N   cache capacity in MiB of keys and values (default 2048)\n"
          "  --idle-seconds S   idle time after the shrink, before RSS is read (default 3)\n"
          "  --seed N           request stream seed (default 42)\n"
          "  --wl-lines 0|1     also print bench/run's `wl:` lines on stderr (default 0)\n");
  exit(code);
}

uint64_t Number(const char* flag, const char* s, uint64_t min, uint64_t max) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (s[0] == '\0' || s[0] == '-' || *end != '\0' || errno != 0 || v < min || v > max) {
    fprintf(stderr, "kv_cache: %s needs a whole number from %llu to %llu, got '%s'\n", flag,
            static_cast<unsigned long long>(min), static_cast<unsigned long long>(max), s);
    exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  cpu_set_t cpus;
  unsigned threads = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 2;
  uint64_t requests = 6000000;
  uint64_t capacity_mib = 2048;
  uint64_t idle_seconds = 3;
  uint64_t seed = 42;
  uint64_t wl_lines = 0;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) Usage(0);
    if (i + 1 >= argc) {
      fprintf(stderr, "kv_cache: unknown option or missing value: %s\n", a);
      Usage(2);
    }
    const char* v = argv[++i];
    if (!strcmp(a, "--threads")) threads = static_cast<unsigned>(Number(a, v, 1, 256));
    else if (!strcmp(a, "--requests")) requests = Number(a, v, 1, uint64_t{1} << 40);
    else if (!strcmp(a, "--capacity-mib")) capacity_mib = Number(a, v, 16, 1 << 20);
    else if (!strcmp(a, "--idle-seconds")) idle_seconds = Number(a, v, 0, 3600);
    else if (!strcmp(a, "--seed")) seed = Number(a, v, 0, ~uint64_t{0});
    else if (!strcmp(a, "--wl-lines")) wl_lines = Number(a, v, 0, 1);
    else {
      fprintf(stderr, "kv_cache: unknown option %s\n", a);
      Usage(2);
    }
  }

  constexpr unsigned kShards = 256;
  const size_t capacity = static_cast<size_t>(capacity_mib) << 20;
  // Enough keys that a full cache holds about three quarters of them.
  const uint64_t keys_per_thread =
      std::max<uint64_t>(1000, static_cast<uint64_t>(capacity / (kMeanValueSize + 64) * 1.33) / threads);
  std::vector<Shard*> shards;
  for (unsigned i = 0; i < kShards; ++i) shards.push_back(new Shard(capacity / kShards));
  auto shard_of = [&](uint64_t id) { return shards[(id * 0x9e3779b97f4a7c15ull) >> 56]; };
  static_assert(kShards == 256, "shard_of takes the top 8 bits");

  // Keys are partitioned among threads (thread t owns ids with id % threads
  // == t) so each knows the version it last wrote to every key it owns.
  std::vector<Worker> workers(threads);
  std::vector<std::vector<uint32_t>> versions(threads);
  auto run = [&](auto body) {
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(body, t);
    for (auto& th : pool) th.join();
  };
  using Clock = std::chrono::steady_clock;
  auto seconds_since = [](Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };

  // ---- load
  auto t_load = Clock::now();
  run([&](unsigned t) {
    std::vector<uint32_t>& version = versions[t];
    version.assign(keys_per_thread, 0);
    uint64_t rng = seed * 7919 + t + 1000;
    // Stop once this thread's share would overfill the cache.
    size_t budget = capacity / threads, filled = 0;
    for (uint64_t local = 0; local < keys_per_thread && filled < budget; ++local) {
      size_t size = ValueSize(SplitMix(rng));
      std::string value;
      FillValue(&value, local * threads + t, 1, size);
      version[local] = 1;
      shard_of(local * threads + t)->Set(local * threads + t, 1, std::move(value));
      filled += size + 64;
    }
  });
  double load_s = seconds_since(t_load);
  size_t rss_loaded = ResidentBytes();

  // ---- serve
  const bench::TickClock& tick = bench::TickClock::Get();
  auto t_serve = Clock::now();
  run([&](unsigned t) {
    Worker& w = workers[t];
    std::vector<uint32_t>& version = versions[t];
    uint64_t rng = seed * 7919 + t;
    std::string got, scratch;
    const uint64_t mine = requests / threads + (t < requests % threads ? 1 : 0);
    const uint64_t hot = std::max<uint64_t>(1, keys_per_thread / 10);
    for (uint64_t n = 0; n < mine; ++n) {
      uint64_t x = SplitMix(rng);
      uint64_t local = (x & 1) ? (x >> 8) % hot : (x >> 8) % keys_per_thread;
      uint64_t id = local * threads + t;
      unsigned op = static_cast<unsigned>((x >> 40) % 10000);
      // Drawn for every request, used or not, so the stream does not depend
      // on hits and misses.
      uint64_t r2 = SplitMix(rng);
      size_t value_size = ValueSize(r2);
      const uint64_t start = tick.Now();
      std::string response;
      if (op < 8400) {  // GET
        ++w.gets;
        uint32_t v = shard_of(id)->Get(id, &got);
        if (v != 0) {
          ++w.hits;
          if (v != version[local] || !CheckValue(got, id, v, (r2 >> 32) % 64 == 0, &scratch)) ++w.bad;
          response.reserve(got.size() + 32);
          response.append("VALUE ").append(std::to_string(id)).append(" ").append(got);
        } else {
          // A miss: the client fills the entry from its database.
          std::string value;
          FillValue(&value, id, ++version[local], value_size);
          shard_of(id)->Set(id, version[local], std::move(value));
          response = "MISS";
        }
      } else if (op < 9600) {  // SET
        ++w.sets;
        std::string value;
        FillValue(&value, id, ++version[local], value_size);
        shard_of(id)->Set(id, version[local], std::move(value));
        response = "STORED";
      } else if (op < 9995) {  // DELETE
        ++w.deletes;
        shard_of(id)->Delete(id);
        response = "DELETED";
      } else {  // 1 in 2000: a multi-GET of 8..135 of this thread's keys, a large response
        ++w.mgets;
        unsigned count = 8 + static_cast<unsigned>(r2 % 128);
        uint64_t k = local;
        for (unsigned i = 0; i < count; ++i) {
          k = (k + 7919) % keys_per_thread;
          uint64_t kid = k * threads + t;
          uint32_t v = shard_of(kid)->Get(kid, &got);
          if (v == 0) continue;
          if (v != version[k] || !CheckValue(got, kid, v, false, &scratch)) ++w.bad;
          response.append("VALUE ").append(std::to_string(kid)).append(" ").append(got);
        }
        w.mget_bytes += response.size();
        w.largest_response = std::max<uint64_t>(w.largest_response, response.size());
      }
      w.checksum = w.checksum * 31 + op + value_size;
      // The response is freed when the request ends, inside the timing.
      response = std::string();
      w.latency.Add(tick.ToNs(tick.Now() - start));
      ++w.served;
    }
  });
  double serve_s = seconds_since(t_serve);
  size_t anon_serving = 0;
  double coverage = HugepageCoverage(&anon_serving);
  size_t rss_served = ResidentBytes();

  // ---- shrink and idle
  run([&](unsigned t) {
    for (uint64_t local = 0; local < keys_per_thread; ++local) {
      if (local % 4 != 0) shard_of(local * threads + t)->Delete(local * threads + t);
    }
  });
  if (idle_seconds > 0) std::this_thread::sleep_for(std::chrono::seconds(idle_seconds));
  size_t rss_end = ResidentBytes();
  size_t entries_end = 0;
  for (Shard* s : shards) entries_end += s->Size();

  Worker total;
  uint64_t checksum = 0;
  for (Worker& w : workers) {
    total.latency.Merge(w.latency);
    total.served += w.served;
    total.gets += w.gets;
    total.hits += w.hits;
    total.sets += w.sets;
    total.deletes += w.deletes;
    total.mgets += w.mgets;
    total.mget_bytes += w.mget_bytes;
    total.bad += w.bad;
    total.largest_response = std::max(total.largest_response, w.largest_response);
    checksum ^= w.checksum;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double peak_rss_mib = static_cast<double>(ru.ru_maxrss) / 1024.0;
  double cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  const bench::LatencyHistogram& h = total.latency;
  auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };

  printf("kv_cache: %u threads, capacity %llu MiB, %llu keys; loaded in %.2f s (RSS %.0f MiB)\n", threads,
         static_cast<unsigned long long>(capacity_mib), static_cast<unsigned long long>(keys_per_thread * threads),
         load_s, static_cast<double>(rss_loaded) / 1048576.0);
  printf("served %llu requests in %.2f s: %.0f requests/s; %llu GETs (%.1f%% hits), %llu SETs, %llu DELETEs, "
         "%llu multi-GETs (largest response %.1f MiB)\n",
         static_cast<unsigned long long>(total.served), serve_s, static_cast<double>(total.served) / serve_s,
         static_cast<unsigned long long>(total.gets),
         total.gets ? 100.0 * static_cast<double>(total.hits) / static_cast<double>(total.gets) : 0.0,
         static_cast<unsigned long long>(total.sets), static_cast<unsigned long long>(total.deletes),
         static_cast<unsigned long long>(total.mgets), static_cast<double>(total.largest_response) / 1048576.0);
  printf("latency us: p50 %.2f  p99 %.2f  p99.9 %.2f  max %.1f\n", us(h.Quantile(0.5)), us(h.Quantile(0.99)),
         us(h.Quantile(0.999)), us(h.max()));
  printf("RSS MiB: peak %.0f, after serving %.0f, after dropping 3/4 of the entries and %llu s idle %.0f; "
         "hugepage coverage after serving %.1f%%\n",
         peak_rss_mib, static_cast<double>(rss_served) / 1048576.0, static_cast<unsigned long long>(idle_seconds),
         static_cast<double>(rss_end) / 1048576.0, 100.0 * coverage);
  printf("checksum %016llx\n", static_cast<unsigned long long>(checksum));
  printf("RESULT {\"allocator\": \"%s\", \"threads\": %u, \"requests\": %llu, \"serve_s\": %.4f, "
         "\"load_s\": %.4f, \"cpu_s\": %.3f, \"throughput\": %.1f, \"p50_us\": %.3f, \"p99_us\": %.3f, "
         "\"p999_us\": %.3f, \"max_us\": %.1f, \"peak_rss_mib\": %.1f, \"served_rss_mib\": %.1f, "
         "\"end_rss_mib\": %.1f, \"coverage\": %.4f, \"idle_s\": %llu, \"entries_end\": %zu, "
         "\"checksum\": \"%016llx\", \"bad\": %llu}\n",
         AllocatorInUse().c_str(), threads, static_cast<unsigned long long>(total.served), serve_s, load_s, cpu_s,
         static_cast<double>(total.served) / serve_s, us(h.Quantile(0.5)), us(h.Quantile(0.99)),
         us(h.Quantile(0.999)), us(h.max()), peak_rss_mib, static_cast<double>(rss_served) / 1048576.0,
         static_cast<double>(rss_end) / 1048576.0, coverage, static_cast<unsigned long long>(idle_seconds),
         entries_end, static_cast<unsigned long long>(checksum), static_cast<unsigned long long>(total.bad));
  // The lines bench/run reads when it runs this as its kv_cache workload
  // (not for scripts/demo, which shows whatever a run writes to stderr).
  if (wl_lines != 0) {
    h.Print(stderr, serve_s);
    wl::PrintMem("exit");
    wl::PrintAllocatorLibs();
  }
  for (Shard* s : shards) delete s;
  if (total.bad != 0) {
    printf("ERROR: %llu reads returned wrong bytes\n", static_cast<unsigned long long>(total.bad));
    return 1;
  }
  return 0;
}
