# Bazel (issue 9, docs/bazel.md). Included from tests/CMakeLists.txt in
# Release builds.
#
# bazel.build_files: BUILD.bazel, WORKSPACE and the example parse, and the
#   Bazel source lists, options and variants match CMakeLists.txt (no Bazel
#   needed; fails when someone adds a source to CMake only).
# bazel.example: builds examples/bazel (cc_binary/cc_test with
#   malloc = "@jsmalloc//:jsmalloc" and :jsmalloc_4k, plus
#   @jsmalloc//:libjsmalloc.so) with Debian's bazel-bootstrap, offline, and
#   runs it. About 2 minutes the first time on 2 busy cores, 10 s after that
#   (the output root, /tmp/bazel-jsmalloc-$UID, is kept across runs). Skipped
#   (exit 77) when bazel is not installed.
find_program(JSMALLOC_PYTHON3 python3)
if(JSMALLOC_PYTHON3)
  add_test(NAME bazel.build_files
           COMMAND ${JSMALLOC_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/check_build_files.py ${PROJECT_SOURCE_DIR})
  set_tests_properties(bazel.build_files PROPERTIES TIMEOUT 60)
endif()

add_test(NAME bazel.example
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/run_example.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(bazel.example PROPERTIES TIMEOUT ${JSMALLOC_TEST_TIMEOUT} PROCESSORS 2
                     SKIP_RETURN_CODE 77)
