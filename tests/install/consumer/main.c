/* Consumer of an installed JSMalloc: checks that this program's allocations,
 * and those libc makes on its behalf, come from JSMalloc.
 *
 *   consumer PAGE_SIZE    (the allocator page size the linked library must have)
 *
 * Prints the report's banner line, the library mapped into the process (or
 * "none" when linked statically) and "consumer ok"; exits 1 on a failure. */
#define _GNU_SOURCE
#include <jsmalloc/jsmalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond)                                             \
  do {                                                          \
    if (!(cond)) {                                              \
      fprintf(stderr, "consumer: FAILED: %s (line %d)\n", #cond, __LINE__); \
      failures++;                                               \
    }                                                           \
  } while (0)

int main(int argc, char **argv) {
  size_t want_page = argc > 1 ? strtoul(argv[1], NULL, 10) : 0;
  static const size_t sizes[] = {1, 16, 1000, 32768, 300000, 4 << 20};
  void *p[sizeof(sizes) / sizeof(sizes[0])];
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    p[i] = malloc(sizes[i]);
    CHECK(p[i] != NULL);
    memset(p[i], 0x5a, sizes[i]);
    CHECK(jsmalloc_get_ownership(p[i]) == 1);
    CHECK(jsmalloc_get_allocated_size(p[i]) >= sizes[i]);
  }
  /* libc allocating for us (strdup inside libc.so) goes through JSMalloc too. */
  char *s = strdup("allocated by libc");
  CHECK(jsmalloc_get_ownership(s) == 1);
  void *q = NULL;
  CHECK(posix_memalign(&q, 4096, 5000) == 0 && ((size_t)q & 4095) == 0);
  CHECK(jsmalloc_get_ownership(q) == 1);
  int local = 0;
  CHECK(jsmalloc_get_ownership(&local) == 0);

  size_t page = 0;
  CHECK(jsmalloc_get_numeric_property("jsmalloc.page_size", &page) == 1);
  if (want_page != 0) CHECK(page == want_page);
  CHECK(strcmp(jsmalloc_version(), JSMALLOC_VERSION_STRING) == 0);
  size_t in_use = 0;
  CHECK(jsmalloc_get_numeric_property("generic.current_allocated_bytes", &in_use) == 1);
  CHECK(in_use >= (4 << 20));

  char report[512];
  jsmalloc_get_stats(report, sizeof(report));
  char *nl = strchr(report, '\n');
  if (nl != NULL) *nl = '\0';
  CHECK(strncmp(report, "JSMalloc ", 9) == 0);
  printf("banner: %s\n", report);
  printf("page size: %zu\n", page);
  printf("generic.current_allocated_bytes: %zu\n", in_use);

  /* Which libjsmalloc this process has mapped, if any. */
  const char *mapped = "none";
  char line[4096];
  FILE *maps = fopen("/proc/self/maps", "r");
  while (maps != NULL && fgets(line, sizeof(line), maps) != NULL) {
    char *path = strchr(line, '/');
    if (path != NULL && strstr(path, "/libjsmalloc") != NULL) {
      path[strcspn(path, "\n")] = '\0';
      mapped = path;
      break;
    }
  }
  printf("mapped: %s\n", mapped);
  if (maps != NULL) fclose(maps);

  for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) free(p[i]);
  free(s);
  free(q);
  if (failures != 0) return 1;
  printf("consumer ok\n");
  return 0;
}
