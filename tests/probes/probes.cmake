# USDT probe tests (included from tests/CMakeLists.txt in Release builds).
# Each runs bpftrace as root; without BPF they print why and fail (set
# JSMALLOC_TEST_PROBE_TESTS_ALLOW_SKIP=1 to have them skipped instead, elsewhere).

# The scenario program, statically linked: `bpftrace -c` resolves USDT probes
# only in objects mapped when the child starts, i.e. its executable.
add_executable(jsmalloc_probe_workload_static ${CMAKE_CURRENT_SOURCE_DIR}/probes/probe_workload.cc)
add_dependencies(jsmalloc_probe_workload_static jsmalloc_static)
target_include_directories(jsmalloc_probe_workload_static PRIVATE ${PROJECT_SOURCE_DIR}
                           ${PROJECT_SOURCE_DIR}/include)
target_compile_definitions(jsmalloc_probe_workload_static PRIVATE JSMALLOC_PROBE_WORKLOAD_STATIC=1
                           JSMALLOC_PAGE_SHIFT=${JSMALLOC_PAGE_SHIFT})
target_compile_options(jsmalloc_probe_workload_static PRIVATE -Wall -fno-builtin-malloc
                       -fno-omit-frame-pointer)
target_link_libraries(jsmalloc_probe_workload_static PRIVATE
                      -Wl,--whole-archive $<TARGET_FILE:jsmalloc_static> -Wl,--no-whole-archive
                      pthread uring)

# The same scenarios on libjsmalloc.so (traced through probes/jsmalloc-trace).
add_executable(jsmalloc_probe_workload ${CMAKE_CURRENT_SOURCE_DIR}/probes/probe_workload.cc)
target_include_directories(jsmalloc_probe_workload PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_definitions(jsmalloc_probe_workload PRIVATE JSMALLOC_PAGE_SHIFT=${JSMALLOC_PAGE_SHIFT})
target_compile_options(jsmalloc_probe_workload PRIVATE -Wall -fno-builtin-malloc)
target_link_libraries(jsmalloc_probe_workload PRIVATE jsmalloc pthread)

# A mixed allocation churn on libjsmalloc.so for running the shipped scripts.
add_executable(jsmalloc_probe_churn ${CMAKE_CURRENT_SOURCE_DIR}/probes/churn.cc)
target_compile_options(jsmalloc_probe_churn PRIVATE -Wall -fno-builtin-malloc)
target_link_libraries(jsmalloc_probe_churn PRIVATE jsmalloc pthread)

set(probe_test ${CMAKE_CURRENT_SOURCE_DIR}/probes/probe_test.py)
set(probe_args --workload $<TARGET_FILE:jsmalloc_probe_workload_static>
               --shared-workload $<TARGET_FILE:jsmalloc_probe_workload>
               --churn $<TARGET_FILE:jsmalloc_probe_churn>
               --lib $<TARGET_FILE:jsmalloc> --trace ${PROJECT_SOURCE_DIR}/probes/jsmalloc-trace
               --scripts ${PROJECT_SOURCE_DIR}/probes)
set(probe_tests
  span_alloc span_return central_refill central_return transfer_overflow cpu_cache_resize
  sample_alloc sample_free sample_alloc_real backend_grow hugepage_taken hugepage_filled hugepage_broken
  hugepage_released hugepage_collapsed region_created region_freed hugecache_hit hugecache_miss
  hugecache_release release background_cycle memory_limit_hit numa_node
  backend_grow_legacy release_legacy shared_library list wrapper_pid
  script.span_lifecycle script.hugepage_lifecycle script.release_latency
  script.top_sampled_sites)
foreach(t ${probe_tests})
  add_test(NAME probes.${t} COMMAND /usr/bin/python3 ${probe_test} ${probe_args} ${t})
  set_tests_properties(probes.${t} PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
endforeach()
# jsmalloc-trace -p under mawk, Debian's default awk when gawk is not
# installed: mawk reads a pipe in blocks unless run interactive, which once
# held back the attach marker until bpftrace exited (the test hung; found in
# the tests/vm guest, whose image has no gawk).
find_program(JSMALLOC_MAWK mawk)
if(JSMALLOC_MAWK)
  set(mawk_path ${CMAKE_CURRENT_BINARY_DIR}/mawk_as_awk)
  file(MAKE_DIRECTORY ${mawk_path})
  file(CREATE_LINK ${JSMALLOC_MAWK} ${mawk_path}/awk SYMBOLIC)
  add_test(NAME probes.script.top_sampled_sites_mawk
           COMMAND ${CMAKE_COMMAND} -E env PATH=${mawk_path}:$ENV{PATH}
                   /usr/bin/python3 ${probe_test} ${probe_args} script.top_sampled_sites)
  set_tests_properties(probes.script.top_sampled_sites_mawk PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
endif()
# numa_node on real nodes: needs CPU 1 on node 1, so only in the two-node
# guest of tests/vm (label guest).
add_test(NAME probes.numa_node_real COMMAND /usr/bin/python3 ${probe_test} ${probe_args} numa_node_real)
set_tests_properties(probes.numa_node_real PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS guest)
