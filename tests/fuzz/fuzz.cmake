# libFuzzer targets for JSMalloc's components and for the whole allocator
# (docs/reliability.md). Needs clang: libFuzzer ships with clang's
# compiler-rt (Debian: clang-14 and libclang-rt-14-dev).
#
# Include this file once the jsmalloc_core target exists. tests/fuzz/
# CMakeLists.txt is a standalone project that does so (scripts/test builds it
# in build-test/fuzz); the top-level build may include it too:
#   include(tests/fuzz/fuzz.cmake)   # with -DJSMALLOC_FUZZ=ON and clang
# but only in a build directory of its own: it compiles the layers' object libraries (jsmalloc_<layer>_objs) and jsmalloc_rseq_objs (and so
# everything built from it, libjsmalloc.so included) with ASan, UBSan and
# libFuzzer's coverage.
#
# Per target:
#   jsmalloc_fuzz_<name>     the fuzzer (libFuzzer + ASan + UBSan), linked
#                            against jsmalloc_core (no exported malloc)
#   ctest fuzz.<name>        runs it for JSMALLOC_TEST_FUZZ_SECONDS (default 20) s
#                            from the seeds in corpus/<name>/
#   ctest fuzz_regress.<name> replays every input in regressions/<name>/
option(JSMALLOC_FUZZ "Build the libFuzzer targets and their ctest tests (clang only)" OFF)
if(NOT JSMALLOC_FUZZ)
  return()
endif()
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "JSMALLOC_FUZZ needs clang (libFuzzer): configure with "
                      "-DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14")
endif()
if(NOT TARGET jsmalloc_core)
  message(FATAL_ERROR "include fuzz.cmake after the jsmalloc_core target is defined")
endif()

set(JSMALLOC_FUZZ_SANITIZERS "address,undefined" CACHE STRING
    "Sanitizers for the fuzz targets and the component library they link")
# vptr and function checks need RTTI, which the allocator is built without.
set(jsmalloc_fuzz_san -fsanitize=${JSMALLOC_FUZZ_SANITIZERS} -fno-sanitize=vptr,function
    -fno-sanitize-recover=all -fno-omit-frame-pointer -g)

# Nothing clang-specific is needed any more (base/config.h's PageIdOf was
# constexpr with a reinterpret_cast, which clang rejects; it no longer is).
set(jsmalloc_fuzz_clang_compat "")

# The components themselves: coverage for libFuzzer's guidance, and the same
# sanitizers as the targets.
set(jsmalloc_fuzz_objs jsmalloc_rseq_objs)
if(NOT DEFINED JSMALLOC_LAYERS)
  # Included by tests/fuzz/CMakeLists.txt, which adds the project as a
  # subdirectory: the layer list is a variable of that directory.
  get_directory_property(JSMALLOC_LAYERS DIRECTORY ${CMAKE_CURRENT_LIST_DIR}/../.. DEFINITION JSMALLOC_LAYERS)
endif()
foreach(layer ${JSMALLOC_LAYERS})
  list(APPEND jsmalloc_fuzz_objs jsmalloc_${layer}_objs)
endforeach()
foreach(o ${jsmalloc_fuzz_objs})
  target_compile_options(${o} PRIVATE -fsanitize=fuzzer-no-link ${jsmalloc_fuzz_san}
                         ${jsmalloc_fuzz_clang_compat})
endforeach()

set(JSMALLOC_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
set(JSMALLOC_FUZZ_TARGETS size_map pagemap page_heap filler region huge_cache allocator)
foreach(name ${JSMALLOC_FUZZ_TARGETS})
  set(t jsmalloc_fuzz_${name})
  add_executable(${t} ${JSMALLOC_FUZZ_DIR}/${name}_fuzz.cc)
  target_link_libraries(${t} PRIVATE jsmalloc_core)
  set_target_properties(${t} PROPERTIES CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
  # The targets' own code is mostly the model: comparison tracing there (a
  # callback per compare in every model loop) would cost more than it guides.
  # The components keep it.
  target_compile_options(${t} PRIVATE -fsanitize=fuzzer -fno-sanitize-coverage=trace-cmp ${jsmalloc_fuzz_san}
                         ${jsmalloc_fuzz_clang_compat} -Wall -Wno-unused-parameter)
  target_link_options(${t} PRIVATE -fsanitize=fuzzer ${jsmalloc_fuzz_san})
endforeach()

# jsmalloc_fuzz_add_tests(TEST_NAME TARGET_NAME [ENV var=value...])
# The whole-allocator target runs once per allocator configuration; all
# configurations share its seeds and regression inputs.
function(jsmalloc_fuzz_add_tests test name)
  set(bin $<TARGET_FILE:jsmalloc_fuzz_${name}>)
  set(work ${CMAKE_BINARY_DIR}/fuzz-work/${test})
  add_test(NAME fuzz.${test}
           COMMAND ${JSMALLOC_FUZZ_DIR}/run_fuzz.sh fuzz ${bin} ${test}
                   ${JSMALLOC_FUZZ_DIR}/corpus/${name} ${work})
  # run_fuzz.sh stops libFuzzer itself (-max_total_time, then `timeout`):
  # no ctest timeout, so a soak of any length is one variable away.
  set_tests_properties(fuzz.${test} PROPERTIES TIMEOUT 1000000 LABELS fuzz ENVIRONMENT "${ARGN}")
  # A replay only where there are regression inputs (files beside README);
  # one added later is picked up at the next configure.
  file(GLOB inputs CONFIGURE_DEPENDS ${JSMALLOC_FUZZ_DIR}/regressions/${name}/*)
  list(FILTER inputs EXCLUDE REGEX "/README$")
  if(inputs)
    add_test(NAME fuzz_regress.${test}
             COMMAND ${JSMALLOC_FUZZ_DIR}/run_fuzz.sh replay ${bin} ${test}
                     ${JSMALLOC_FUZZ_DIR}/regressions/${name} ${work})
    set_tests_properties(fuzz_regress.${test} PROPERTIES TIMEOUT 1000000 LABELS fuzz ENVIRONMENT "${ARGN}")
    # Should the inputs go missing, the replay says so and exits 77.
    set_tests_properties(fuzz_regress.${test} PROPERTIES SKIP_RETURN_CODE 77)
  endif()
endfunction()

foreach(name size_map pagemap page_heap filler region huge_cache)
  jsmalloc_fuzz_add_tests(${name} ${name})
endforeach()
# Default configuration: per-CPU caches (rseq) and the hugepage-aware back-end.
jsmalloc_fuzz_add_tests(allocator allocator)
# Per-thread caches and the legacy page heap, in check mode (every free
# validated at once; valid sequences must never trip it).
jsmalloc_fuzz_add_tests(allocator_legacy allocator JSMALLOC_PER_CPU=0 JSMALLOC_BACKEND=legacy JSMALLOC_CHECK=1)
# NUMA-aware mode on an injected two-node topology (one node per CPU: the
# target's CPU moves make frees remote), with encoded freelist links and
# guarded sampling (a sample every 256 KiB on average, one in 4 guarded).
jsmalloc_fuzz_add_tests(allocator_numa allocator JSMALLOC_NUMA_AWARE=1 JSMALLOC_NUMA_TOPOLOGY=0/1
                        JSMALLOC_HARDENED=1 JSMALLOC_SAMPLE_INTERVAL=262144 JSMALLOC_GUARDED_RATE=4)
