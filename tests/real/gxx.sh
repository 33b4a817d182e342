#!/usr/bin/env bash
# A g++ compile (driver, cc1plus, as, ld all preloaded): identical object
# code, and the program it builds gives the same output.
source "$(dirname "$0")/common.sh"
cat > "$WORK/prog.cc" <<'CC'
#include <algorithm>
#include <iostream>
#include <map>
#include <regex>
#include <string>
#include <vector>
int main() {
  std::map<std::string, int> counts;
  std::regex word("[a-z]+");
  std::string text = "the quick brown fox jumps over the lazy dog the end";
  for (auto it = std::sregex_iterator(text.begin(), text.end(), word); it != std::sregex_iterator(); ++it)
    counts[it->str()]++;
  std::vector<std::pair<int, std::string>> v;
  for (auto& [w, c] : counts) v.emplace_back(c, w);
  std::sort(v.rbegin(), v.rend());
  for (auto& [c, w] : v) std::cout << w << " " << c << "\n";
}
CC
run_compare gxx_object sh -c "g++ -O2 -std=c++17 -c '$WORK/prog.cc' -o '$WORK/prog.o' && od -An -tx1 '$WORK/prog.o' | md5sum"
g++ -O2 -std=c++17 "$WORK/prog.cc" -o "$WORK/prog"
run_compare gxx_program "$WORK/prog"
