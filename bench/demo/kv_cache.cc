// The demo's workload: an in-memory key-value cache service, the kind of
// program JSMalloc is meant for. Worker threads serve a deterministic stream
// of GET/SET/DELETE requests against a sharded hash map of std::string keys
// and values (16 B .. 64 KiB, skewed small), evicting least recently used
// entries to stay under a byte capacity, and build a small response string
// per request. Every GET checks the bytes it read. Prints requests served,
// the hit rate and a checksum that does not depend on the allocator or on
// thread interleaving.
//
// kv_cache [--threads N] [--requests N] [--capacity-mib N] [--seed N]
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

struct Entry {
  std::string value;
  std::list<std::string>::iterator lru;
};

class Shard {
 public:
  explicit Shard(size_t capacity) : capacity_(capacity) {}

  bool Get(const std::string& key, std::string* out) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    *out = it->second.value;
    return true;
  }

  void Set(const std::string& key, std::string value) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) {
      bytes_ -= it->second.value.size();
      bytes_ += value.size();
      it->second.value = std::move(value);
      lru_.splice(lru_.begin(), lru_, it->second.lru);
    } else {
      lru_.push_front(key);
      bytes_ += key.size() + value.size();
      map_.emplace(key, Entry{std::move(value), lru_.begin()});
    }
    while (bytes_ > capacity_ && !lru_.empty()) {
      auto victim = map_.find(lru_.back());
      bytes_ -= victim->first.size() + victim->second.value.size();
      map_.erase(victim);
      lru_.pop_back();
    }
  }

  void Delete(const std::string& key) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return;
    bytes_ -= it->first.size() + it->second.value.size();
    lru_.erase(it->second.lru);
    map_.erase(it);
  }

  size_t Size() {
    std::lock_guard<std::mutex> g(mu_);
    return map_.size();
  }

 private:
  std::mutex mu_;
  size_t capacity_;
  size_t bytes_ = 0;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> lru_;
};

std::string MakeKey(uint64_t id) {
  char buf[32];
  int n = snprintf(buf, sizeof(buf), "user:%llu:profile", static_cast<unsigned long long>(id));
  return std::string(buf, n);
}

// The value's bytes are a function of (key id, version) so a GET can verify
// what it read.
std::string MakeValue(uint64_t id, uint64_t version, size_t size) {
  std::string v(size, '\0');
  uint64_t s = id * 1000003 + version;
  for (size_t i = 0; i < size; i += 8) {
    uint64_t w = SplitMix(s);
    memcpy(&v[i], &w, size - i < 8 ? size - i : 8);
  }
  return v;
}

struct WorkerResult {
  uint64_t served = 0, hits = 0, misses = 0, checksum = 0, bad = 0;
};

}  // namespace

int main(int argc, char** argv) {
  unsigned threads = 4;
  uint64_t requests = 1500000;
  size_t capacity_mib = 384;
  uint64_t seed = 42;
  for (int i = 1; i < argc; ++i) {
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) { fprintf(stderr, "missing value for %s\n", argv[i]); exit(2); }
      return argv[++i];
    };
    if (!strcmp(argv[i], "--threads")) threads = atoi(next());
    else if (!strcmp(argv[i], "--requests")) requests = strtoull(next(), nullptr, 10);
    else if (!strcmp(argv[i], "--capacity-mib")) capacity_mib = strtoull(next(), nullptr, 10);
    else if (!strcmp(argv[i], "--seed")) seed = strtoull(next(), nullptr, 10);
    else {
      fprintf(stderr, "usage: %s [--threads N] [--requests N] [--capacity-mib N] [--seed N]\n", argv[0]);
      return strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  if (threads == 0) threads = 1;

  constexpr unsigned kShards = 64;
  // Keys are partitioned among threads (thread t owns ids with id % threads
  // == t) so every GET's expected version is known without coordination and
  // the checksum is independent of the interleaving; shards are shared, so
  // threads still contend and free each other's evicted memory.
  constexpr uint64_t kKeysPerThread = 400000;
  std::vector<Shard*> shards;
  for (unsigned i = 0; i < kShards; ++i) shards.push_back(new Shard((capacity_mib << 20) / kShards));

  std::vector<WorkerResult> results(threads);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      WorkerResult& r = results[t];
      uint64_t rng = seed * 7919 + t;
      std::vector<uint32_t> version(kKeysPerThread, 0);  // 0 = absent
      std::string got;
      uint64_t mine = requests / threads;
      for (uint64_t n = 0; n < mine; ++n) {
        uint64_t x = SplitMix(rng);
        // Skewed popularity: a hot set of 2% of the keys gets half the traffic.
        uint64_t local = (x & 1) ? (x >> 8) % (kKeysPerThread / 50) : (x >> 8) % kKeysPerThread;
        uint64_t id = local * threads + t;
        std::string key = MakeKey(id);
        Shard* shard = shards[std::hash<std::string>()(key) % kShards];
        unsigned op = (x >> 40) % 100;
        // Drawn for every request, used or not, so the stream of random
        // numbers does not depend on hits and misses.
        size_t value_size = ValueSize(SplitMix(rng));
        std::string response;
        size_t set_size = 0;
        if (op < 70) {
          if (shard->Get(key, &got)) {
            ++r.hits;
            std::string want = MakeValue(id, version[local], got.size());
            if (version[local] == 0 || got != want) ++r.bad;
            response = "VALUE " + key + " " + std::to_string(got.size());
          } else {
            ++r.misses;  // never set, or evicted: fill it as a cache would
            uint32_t v = ++version[local];
            shard->Set(key, MakeValue(id, v, value_size));
            response = "MISS " + key;
          }
        } else if (op < 95) {
          uint32_t v = ++version[local];
          set_size = value_size;
          shard->Set(key, MakeValue(id, v, set_size));
          response = "STORED " + key;
        } else {
          shard->Delete(key);
          response = "DELETED " + key;
        }
        // Hits and misses depend on which entries other threads' SETs
        // evicted, so only the request stream goes into the checksum; the
        // bytes every GET read were verified above.
        r.checksum = r.checksum * 31 + set_size + (x & 0xff);
        ++r.served;
      }
    });
  }
  for (auto& th : pool) th.join();

  WorkerResult total;
  for (auto& r : results) {
    total.served += r.served;
    total.hits += r.hits;
    total.misses += r.misses;
    total.bad += r.bad;
    total.checksum ^= r.checksum;
  }
  size_t entries = 0;
  for (Shard* s : shards) entries += s->Size();
  for (Shard* s : shards) delete s;
  printf("served %llu requests with %u threads: %llu hits, %llu misses, %zu entries cached at the end\n",
         static_cast<unsigned long long>(total.served), threads,
         static_cast<unsigned long long>(total.hits), static_cast<unsigned long long>(total.misses), entries);
  printf("checksum %016llx\n", static_cast<unsigned long long>(total.checksum));
  if (total.bad != 0) {
    printf("ERROR: %llu GETs returned wrong bytes\n", static_cast<unsigned long long>(total.bad));
    return 1;
  }
  return 0;
}
