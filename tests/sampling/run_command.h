// Shared by the sampling tests: runs a shell command and returns its stdout.
#ifndef JSMALLOC_TESTS_SAMPLING_RUN_COMMAND_H_
#define JSMALLOC_TESTS_SAMPLING_RUN_COMMAND_H_

#include <cstdio>
#include <string>

inline std::string RunCommand(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

#endif  // JSMALLOC_TESTS_SAMPLING_RUN_COMMAND_H_
