# Reliability under faults (issue 8, items 3, 4 and 7): fork and threads,
# out of memory, soak. Included from tests/CMakeLists.txt outside the
# ThreadSanitizer block (TSan does not support fork() from a threaded
# process), so the Release and UBSan builds run it. What each test does, the
# faults it injects and what it does not cover: docs/reliability.md.

# --- Fork and threads: per-CPU, per-thread, NUMA-aware on an injected
# two-node topology. Each mode takes ~10-20 s on 2 cores.
jsmalloc_linked_test(jsmalloc_reliability_fork_tests ${CMAKE_CURRENT_LIST_DIR}/fork_threads_test.cc)
jsmalloc_discover_with_env(jsmalloc_reliability_fork_tests "reliability.fork_percpu."
  ENV "JSMALLOC_TEST_EXPECT_PER_CPU=1")
jsmalloc_discover_with_env(jsmalloc_reliability_fork_tests "reliability.fork_perthread."
  ENV "JSMALLOC_PER_CPU=0" "JSMALLOC_TEST_EXPECT_PER_CPU=0")
jsmalloc_discover_with_env(jsmalloc_reliability_fork_tests "reliability.fork_numa."
  ENV "JSMALLOC_NUMA_AWARE=1" "JSMALLOC_NUMA_TOPOLOGY=0/1" "JSMALLOC_TEST_EXPECT_PER_CPU=1"
      "JSMALLOC_TEST_EXPECT_NUMA_PARTITIONS=2")
# The same with the background thread from the start: its batched releases
# serve several partitions' back-ends at once (docs/design.md, "Release
# policy and the background thread": this once corrupted memory).
jsmalloc_discover_with_env(jsmalloc_reliability_fork_tests "reliability.fork_numa_bg."
  ENV "JSMALLOC_NUMA_AWARE=1" "JSMALLOC_NUMA_TOPOLOGY=0/1" "JSMALLOC_BACKGROUND=1"
      "JSMALLOC_TEST_EXPECT_PER_CPU=1" "JSMALLOC_TEST_EXPECT_NUMA_PARTITIONS=2")

# --- Out of memory: RLIMIT_AS, the hard limit by API (both front-ends), the
# hard limit from the environment (both front-ends), a cgroup memory limit
# (v2 memory.max or v1 memory.limit_in_bytes, once).
jsmalloc_linked_test(jsmalloc_reliability_oom_tests ${CMAKE_CURRENT_LIST_DIR}/oom_test.cc)
jsmalloc_discover_with_env(jsmalloc_reliability_oom_tests "reliability.oom.percpu."
  FILTER "-Oom.HardLimitFromEnvironment"
  ENV "JSMALLOC_TEST_EXPECT_PER_CPU=1")
jsmalloc_discover_with_env(jsmalloc_reliability_oom_tests "reliability.oom.perthread."
  FILTER "-Oom.HardLimitFromEnvironment:Oom.Cgroup*"
  ENV "JSMALLOC_PER_CPU=0")
# 160 MiB in plain bytes (the test compares it with jsmalloc_get_memory_limit).
jsmalloc_discover_with_env(jsmalloc_reliability_oom_tests "reliability.oom.env_hard_percpu."
  FILTER "Oom.HardLimitFromEnvironment"
  ENV "JSMALLOC_MEMORY_LIMIT=167772160" "JSMALLOC_MEMORY_LIMIT_HARD=1")
jsmalloc_discover_with_env(jsmalloc_reliability_oom_tests "reliability.oom.env_hard_perthread."
  FILTER "Oom.HardLimitFromEnvironment"
  ENV "JSMALLOC_MEMORY_LIMIT=167772160" "JSMALLOC_MEMORY_LIMIT_HARD=1" "JSMALLOC_PER_CPU=0")

# --- Soak: 60 s (the test's default, issue 8); JSMALLOC_TEST_SOAK_SECONDS=600
# for a longer run by hand: build/tests/jsmalloc_reliability_soak_tests.
jsmalloc_linked_test(jsmalloc_reliability_soak_tests ${CMAKE_CURRENT_LIST_DIR}/soak_test.cc)
jsmalloc_discover_with_env(jsmalloc_reliability_soak_tests "reliability.soak." ENV "JSMALLOC_TEST_SOAK_SECONDS=60")

# --- The fork lock table: a fork while each allocator lock is held in turn
# (both front-ends, sampling and guarded allocation on so the child takes
# their paths). Linked with the static library to reach the table.
add_executable(jsmalloc_reliability_fork_lock_tests ${CMAKE_CURRENT_LIST_DIR}/fork_lock_table_test.cc)
add_dependencies(jsmalloc_reliability_fork_lock_tests jsmalloc_static)
target_include_directories(jsmalloc_reliability_fork_lock_tests PRIVATE ${PROJECT_SOURCE_DIR}
                           ${PROJECT_SOURCE_DIR}/include)
target_compile_definitions(jsmalloc_reliability_fork_lock_tests PRIVATE
                           JSMALLOC_PAGE_SHIFT=${JSMALLOC_PAGE_SHIFT} JSMALLOC_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
target_compile_options(jsmalloc_reliability_fork_lock_tests PRIVATE -Wall -fno-builtin-malloc)
target_link_libraries(jsmalloc_reliability_fork_lock_tests PRIVATE
                      -Wl,--whole-archive $<TARGET_FILE:jsmalloc_static> -Wl,--no-whole-archive
                      GTest::gtest_main pthread uring)
jsmalloc_discover_with_env(jsmalloc_reliability_fork_lock_tests "reliability.fork_locks_percpu."
  ENV "JSMALLOC_SAMPLE_INTERVAL=4096" "JSMALLOC_GUARDED_RATE=4")
jsmalloc_discover_with_env(jsmalloc_reliability_fork_lock_tests "reliability.fork_locks_perthread."
  ENV "JSMALLOC_PER_CPU=0" "JSMALLOC_SAMPLE_INTERVAL=4096" "JSMALLOC_GUARDED_RATE=4")
