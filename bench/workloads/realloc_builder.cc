// realloc_builder: many buffers growing by realloc, interleaved, as in
// string builders, serialisers and growing arrays. Three kinds run side by
// side: C buffers grown with realloc (half of them exactly by each append,
// half by doubling), finished with a shrinking realloc to the exact length
// and then to half of it; std::string builders appending chunks; and
// std::vector<uint32_t> builders pushing back. Every finished buffer's
// contents are verified and folded into the checksum.
#include <string>
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_realloc_builder: interleaved growth by realloc / string / vector appends.\n"
    "Single-threaded (--threads is ignored). 256 C realloc builders, 128 std::string\n"
    "and 128 std::vector<uint32_t> builders are active at once; each step appends\n"
    "1-96 bytes (or elements) to a random builder; a builder that reaches its\n"
    "target length (log-uniform, 16 B - 256 KiB) is shrunk by realloc, verified,\n"
    "freed and replaced. 12M steps x scale.\n";

constexpr uint64_t kSteps = 12000000;
constexpr int kCBuilders = 256;
constexpr int kStrings = 128;
constexpr int kVectors = 128;

inline unsigned char ByteAt(uint64_t seed, uint64_t i) {
  return static_cast<unsigned char>(seed + i * 131 + (i >> 9));
}

struct CBuilder {
  char* buf = nullptr;
  size_t len = 0;
  size_t cap = 0;
  size_t target = 0;
  uint64_t seed = 0;
  bool exact = false;  // realloc on every append instead of doubling
};

struct StrBuilder {
  std::string s;
  size_t target = 0;
  uint64_t seed = 0;
};

struct VecBuilder {
  std::vector<uint32_t> v;
  size_t target = 0;
  uint64_t seed = 0;
};

uint64_t VerifyBytes(const char* p, size_t len, uint64_t seed) {
  uint64_t acc = 0;
  for (size_t i = 0; i < len; ++i) {
    unsigned char c = static_cast<unsigned char>(p[i]);
    if (c != ByteAt(seed, i)) wl::Die("builder contents corrupted");
    acc += c;
  }
  return wl::Mix64(acc + len + seed);
}

class Builders {
 public:
  explicit Builders(uint64_t steps) : steps_(steps), rng_(271828) {}

  uint64_t Run() {
    for (CBuilder& b : c_) StartC(&b);
    for (StrBuilder& b : s_) StartS(&b);
    for (VecBuilder& b : v_) StartV(&b);
    for (uint64_t step = 0; step < steps_; ++step) {
      uint64_t r = rng_.Below(4);
      if (r < 2) {
        StepC(&c_[rng_.Below(kCBuilders)]);
      } else if (r == 2) {
        StepS(&s_[rng_.Below(kStrings)]);
      } else {
        StepV(&v_[rng_.Below(kVectors)]);
      }
    }
    for (CBuilder& b : c_) {
      sum_ += VerifyBytes(b.buf, b.len, b.seed);
      free(b.buf);
    }
    for (StrBuilder& b : s_) sum_ += VerifyBytes(b.s.data(), b.s.size(), b.seed);
    for (VecBuilder& b : v_) sum_ += FinishV(&b);
    fprintf(stderr, "wl: builders_finished=%llu\n", static_cast<unsigned long long>(finished_));
    return sum_;
  }

 private:
  uint64_t NextSeed() { return rng_.Next(); }
  size_t NextTarget() { return rng_.LogUniform(16, 256 * 1024); }

  void StartC(CBuilder* b) {
    b->len = 0;
    b->cap = 0;
    b->buf = nullptr;
    b->target = NextTarget();
    b->seed = NextSeed();
    b->exact = (b->seed & 1) != 0;
  }

  void StepC(CBuilder* b) {
    size_t chunk = rng_.Range(1, 96);
    if (b->len + chunk > b->cap) {
      size_t cap = b->exact ? b->len + chunk : (b->cap ? b->cap * 2 : 32);
      while (cap < b->len + chunk) cap *= 2;
      char* p = static_cast<char*>(realloc(b->buf, cap));
      if (p == nullptr) wl::Die("realloc returned NULL");
      b->buf = p;
      b->cap = cap;
    }
    for (size_t i = 0; i < chunk; ++i) b->buf[b->len + i] = static_cast<char>(ByteAt(b->seed, b->len + i));
    b->len += chunk;
    if (b->len < b->target) return;
    // Done: shrink to the exact length, verify, shrink to half, verify again.
    char* p = static_cast<char*>(realloc(b->buf, b->len));
    if (p == nullptr) wl::Die("realloc returned NULL");
    sum_ += VerifyBytes(p, b->len, b->seed);
    size_t half = b->len / 2 + 1;
    p = static_cast<char*>(realloc(p, half));
    if (p == nullptr) wl::Die("realloc returned NULL");
    sum_ += VerifyBytes(p, half, b->seed);
    free(p);
    ++finished_;
    StartC(b);
  }

  void StartS(StrBuilder* b) {
    b->s = std::string();
    b->target = NextTarget();
    b->seed = NextSeed();
  }

  void StepS(StrBuilder* b) {
    size_t chunk = rng_.Range(1, 96);
    size_t base = b->s.size();
    if (chunk < 8) {
      for (size_t i = 0; i < chunk; ++i) b->s.push_back(static_cast<char>(ByteAt(b->seed, base + i)));
    } else {
      char tmp[96];
      for (size_t i = 0; i < chunk; ++i) tmp[i] = static_cast<char>(ByteAt(b->seed, base + i));
      b->s.append(tmp, chunk);
    }
    if (b->s.size() < b->target) return;
    b->s.shrink_to_fit();
    sum_ += VerifyBytes(b->s.data(), b->s.size(), b->seed);
    std::string copy = b->s.substr(0, b->s.size() / 3);  // a short-lived copy
    sum_ += VerifyBytes(copy.data(), copy.size(), b->seed);
    ++finished_;
    StartS(b);
  }

  void StartV(VecBuilder* b) {
    b->v = std::vector<uint32_t>();
    b->target = NextTarget() / 4 + 1;
    b->seed = NextSeed();
  }

  void StepV(VecBuilder* b) {
    size_t chunk = rng_.Range(1, 24);
    for (size_t i = 0; i < chunk; ++i) {
      size_t k = b->v.size();
      b->v.push_back(static_cast<uint32_t>(b->seed * 7 + k * 2654435761u));
    }
    if (b->v.size() < b->target) return;
    sum_ += FinishV(b);
    ++finished_;
    StartV(b);
  }

  uint64_t FinishV(VecBuilder* b) {
    b->v.shrink_to_fit();
    uint64_t acc = 0;
    for (size_t k = 0; k < b->v.size(); ++k) {
      if (b->v[k] != static_cast<uint32_t>(b->seed * 7 + k * 2654435761u)) wl::Die("vector contents corrupted");
      acc += b->v[k];
    }
    return wl::Mix64(acc + b->v.size());
  }

  uint64_t steps_;
  wl::Rng rng_;
  uint64_t sum_ = 0;
  uint64_t finished_ = 0;
  CBuilder c_[kCBuilders];
  StrBuilder s_[kStrings];
  VecBuilder v_[kVectors];
};

}  // namespace

int main(int argc, char** argv) {
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const uint64_t steps = wl::Scaled(kSteps, args.scale, 10000);
  double t0 = wl::NowSeconds();
  Builders* b = new Builders(steps);
  uint64_t sum = b->Run();
  delete b;
  return wl::Finish("realloc_builder", sum, t0);
}
