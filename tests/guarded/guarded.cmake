# Guarded sampling (runtime/guarded_pool.h, docs/reliability.md).
# Included from tests/CMakeLists.txt after the TSan early return.
#
# One binary, three environments:
#   guarded.*       every allocation sampled (JSMALLOC_SAMPLE_INTERVAL=1) and
#                   every sample guarded (JSMALLOC_GUARDED_RATE=1). 1024 slots,
#                   so that the test framework's own long-lived allocations
#                   (guarded too) leave the tests free slots.
#   guarded_lazy.*  rate 1 but sampling off at start: the pool appears with
#                   the first guarded allocation, and its signal handler
#                   chains to one installed before it.
#   guarded_off.*   every allocation sampled, guarding off (the default): no
#                   pool, every sample gets its span as before.
jsmalloc_linked_test(jsmalloc_guarded_tests ${CMAKE_CURRENT_LIST_DIR}/guarded_test.cc)
# The tests misuse freed and out-of-bounds memory on purpose.
target_compile_options(jsmalloc_guarded_tests PRIVATE -Wno-use-after-free -Wno-free-nonheap-object
                       -Wno-array-bounds -Wno-stringop-overflow -fno-builtin-free -fno-builtin-calloc
                       -fno-builtin-realloc -fno-optimize-sibling-calls)
jsmalloc_discover_with_env(jsmalloc_guarded_tests "guarded." FILTER "Guarded.*"
  ENV "JSMALLOC_GUARDED_RATE=1" "JSMALLOC_SAMPLE_INTERVAL=1" "JSMALLOC_GUARDED_SLOTS=1024")
jsmalloc_discover_with_env(jsmalloc_guarded_tests "guarded_lazy." FILTER "GuardedLazy.*"
  ENV "JSMALLOC_GUARDED_RATE=1" "JSMALLOC_SAMPLE_INTERVAL=0")
jsmalloc_discover_with_env(jsmalloc_guarded_tests "guarded_off." FILTER "GuardedOff.*"
  ENV "JSMALLOC_SAMPLE_INTERVAL=1" "JSMALLOC_GUARDED_RATE=0")

# The API and stress sets of the process-wide allocator with guarding on
# (a sample every 4 KiB on average, every sample guarded while slots last):
# about 12 s. Left out: ApiTest.MallocReallyIsJSMalloc (it asks for the span
# of a block that may be guarded, and guarded blocks have none), the fork
# stress test (27 s; the death tests fork with the pool in use), and the
# sampling suite (it checks that samples get spans and keep class sizes,
# which guarded samples deliberately do not).
jsmalloc_discover_with_env(jsmalloc_api_tests "guarded_api." FILTER "ApiTest.*-ApiTest.MallocReallyIsJSMalloc"
  ENV "JSMALLOC_GUARDED_RATE=1" "JSMALLOC_SAMPLE_INTERVAL=4096")
jsmalloc_discover_with_env(jsmalloc_stress_tests "guarded_stress." FILTER "*-*ForkWhileOtherThreadsAllocate"
  ENV "JSMALLOC_GUARDED_RATE=1" "JSMALLOC_SAMPLE_INTERVAL=4096" "JSMALLOC_TEST_EXPECT_PER_CPU=1")

# Not a test: the overhead measurement in docs/reliability.md.
add_executable(jsmalloc_guarded_bench ${CMAKE_CURRENT_LIST_DIR}/guarded_bench.cc)
target_link_libraries(jsmalloc_guarded_bench PRIVATE jsmalloc)
target_compile_options(jsmalloc_guarded_bench PRIVATE -Wall -fno-builtin-malloc -fno-builtin-free)
