// small_process: the program most processes are. A short-lived tool reads a
// configuration (a few hundred small strings in a std::map, ~100 KiB live,
// one thread), and then, like a tool that does a little real work, starts a
// second thread that counts the words of a 1 MiB text into an
// std::unordered_map while the main thread sorts 1 MiB of numbers and
// formats a 1 MiB report (~3 MiB live in total). Then it exits.
//
// The figure is the peak RSS: after the first part (`wl: small
// hwm1_kib=...`: ~100 KiB live, one thread) and at exit (VmHWM of the whole
// run: ~3 MiB live, two threads). An allocator's fixed costs (its own code
// and data, the arenas or caches it sets up, the size of its first mappings)
// are most of the difference here.
#include <algorithm>
#include <map>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace {

const char kUsage[] =
    "wl_small_process: a short-lived two-part program. Part 1 (one thread,\n"
    "~100 KiB live): builds a 200-line configuration text, parses it into an\n"
    "std::map of strings, keeps a 64 KiB read buffer. Part 2 (two threads,\n"
    "~3 MiB live): a thread counts the words of a 1 MiB text into an\n"
    "std::unordered_map (400 distinct words) while the main thread sorts\n"
    "256 Ki numbers and formats a report. Sizes are fixed; scale multiplies\n"
    "the word-count passes (4 x scale, at least 1). Prints `wl: small\n"
    "start_rss_kib=... start_anon_kib=...` (RSS at main() entry, before the\n"
    "program allocates) and `hwm1_kib=...` (peak RSS after part 1); VmHWM at\n"
    "exit is part 2's.\n";

uint64_t Fnv(const char* s, size_t n, uint64_t h = 0xcbf29ce484222325ULL) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(s[i]);
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t Fnv(const std::string& s) { return Fnv(s.data(), s.size()); }

std::string RandomWord(wl::Rng& rng, uint64_t lo, uint64_t hi) {
  std::string w(rng.LogUniform(lo, hi), 'a');
  for (char& c : w) c = static_cast<char>('a' + rng.Below(26));
  return w;
}

// Part 1: the configuration.
uint64_t ReadConfig(std::map<std::string, std::string>& config, char*& read_buffer) {
  wl::Rng rng(1);
  static const char* const kSections[] = {"server", "logging", "storage", "cache", "network"};
  std::string text;
  for (int i = 0; i < 200; ++i) {
    char key[64];
    snprintf(key, sizeof(key), "%s.option_%03d", kSections[rng.Below(5)], i);
    text += key;
    text += " = ";
    text += RandomWord(rng, 4, 60);
    text += '\n';
  }
  // A read buffer, as a program reading its input through stdio-like code.
  read_buffer = static_cast<char*>(malloc(64 * 1024));
  if (read_buffer == nullptr) wl::Die("malloc returned NULL");
  memset(read_buffer, 0, 64 * 1024);
  memcpy(read_buffer, text.data(), std::min<size_t>(text.size(), 64 * 1024 - 1));
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    size_t eq = line.find(" = ");
    if (eq == std::string::npos) wl::Die("config line without '='");
    config.emplace(line.substr(0, eq), line.substr(eq + 3));
  }
  if (config.size() != 200) wl::Die("config has the wrong number of entries");
  uint64_t h = 0;
  for (const auto& [k, v] : config) h = wl::Mix64(h ^ Fnv(k)) + Fnv(v);
  return h ^ Fnv(read_buffer, strlen(read_buffer));
}

// Part 2, second thread: word counts.
uint64_t CountWords(const std::string& text, int passes) {
  std::unordered_map<std::string, uint32_t> counts;
  for (int p = 0; p < passes; ++p) {
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = text.find_first_of(" \n", pos);
      if (end == std::string::npos) end = text.size();
      if (end > pos) ++counts[text.substr(pos, end - pos)];
      pos = end + 1;
    }
  }
  uint64_t h = counts.size();
  for (const auto& [w, n] : counts) h += wl::Mix64(Fnv(w) * 31 + n);  // order-independent
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  // Before the program allocates anything itself: what the loader, the C and
  // C++ runtimes and the allocator's own initialisation left resident.
  long start_anon = 0;
  const long start_rss = wl::Statm().RssKib(&start_anon);
  wl::Args args = wl::ParseArgs(argc, argv, kUsage);
  const int passes = static_cast<int>(wl::Scaled(4, args.scale, 1));
  double t0 = wl::NowSeconds();

  std::map<std::string, std::string> config;
  char* read_buffer = nullptr;
  uint64_t sum = ReadConfig(config, read_buffer);
  wl::MemStatus part1 = wl::ReadMemStatus();
  fprintf(stderr,
          "wl: small start_rss_kib=%ld start_anon_kib=%ld hwm1_kib=%ld rss1_kib=%ld "
          "config_entries=%zu\n",
          start_rss, start_anon, part1.hwm_kib, part1.rss_kib, config.size());

  // Part 2: the text, then two threads.
  wl::Rng rng(2);
  std::vector<std::string> vocabulary;
  for (int i = 0; i < 400; ++i) vocabulary.push_back(RandomWord(rng, 3, 24));
  std::string text;
  text.reserve(1 << 20);
  while (text.size() + 32 < (1 << 20)) {
    text += vocabulary[rng.LogUniform(1, 400) - 1];
    text += rng.Below(12) == 0 ? '\n' : ' ';
  }
  uint64_t words_sum = 0;
  std::thread counter([&] { words_sum = CountWords(text, passes); });

  std::vector<uint32_t> numbers(256 * 1024);
  for (uint32_t& x : numbers) x = static_cast<uint32_t>(rng.Next());
  std::sort(numbers.begin(), numbers.end());
  for (size_t i = 1; i < numbers.size(); ++i)
    if (numbers[i - 1] > numbers[i]) wl::Die("sort order");
  char* report = static_cast<char*>(malloc(1 << 20));
  if (report == nullptr) wl::Die("malloc returned NULL");
  size_t off = 0;
  for (size_t i = 0; i < numbers.size() && off + 32 < (1 << 20); i += 8)
    off += static_cast<size_t>(snprintf(report + off, 32, "%zu %08x\n", i, numbers[i]));
  counter.join();

  sum = wl::Mix64(sum) + words_sum;
  sum = wl::Mix64(sum) + Fnv(report, off);
  sum = wl::Mix64(sum) + Fnv(config.begin()->second);
  free(report);
  free(read_buffer);
  return wl::Finish("small_process", sum, t0);
}
