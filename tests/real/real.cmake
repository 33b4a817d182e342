# Real-program suites under LD_PRELOAD (issue 8, docs/reliability.md): each
# script runs its program with and without JSMalloc, requires the same
# results, and proves JSMalloc was in use from JSMALLOC_STATS_ON_EXIT.
# Included from tests/CMakeLists.txt when not building with sanitizers.
#   name          timeout (s)  processors (the script runs two things at once)
foreach(spec "cpython_tests,600,2" "redis,300,2" "sqlite_schema,300,1" "git,300,1")
  string(REPLACE "," ";" fields "${spec}")
  list(GET fields 0 name)
  list(GET fields 1 timeout)
  list(GET fields 2 processors)
  if(timeout GREATER JSMALLOC_TEST_TIMEOUT)
    set(timeout ${JSMALLOC_TEST_TIMEOUT})
  endif()
  add_test(NAME real.${name}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/real/${name}.sh $<TARGET_FILE:jsmalloc>)
  set_tests_properties(real.${name} PROPERTIES TIMEOUT ${timeout} PROCESSORS ${processors})
endforeach()
