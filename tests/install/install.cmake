# Install, CMake package, pkg-config and Debian package (issue 9; docs/install.md).
# Included from tests/CMakeLists.txt in Release builds. Each test is a script
# given the build and source directories; it installs into (or unpacks into)
# a temp directory of its own and touches nothing else.
#   install.cmake_package  cmake --install, the installed tree, find_package
#                          consumer (shared/static, C/C++, every variant)
#   install.pkg_config     the consumer built by gcc/g++ with pkg-config flags
#   install.deb            cpack -G DEB, dpkg-deb -I/-c, dpkg --root install,
#                          jsmalloc-run from the scratch root, removal
#   install.tools          installed jsmalloc-run, jsmalloc-hugepages,
#                          jsmalloc-trace (bpftrace; root)
#   install.man            the man pages: no groff warning, installed gzipped
#                          and found by man -M, in step with --help, jsmalloc.h
#                          and the settings (man-db, groff-base)
foreach(t cmake_package pkg_config deb tools man)
  add_test(NAME install.${t}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/install/${t}.sh ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR})
  set_tests_properties(install.${t} PROPERTIES TIMEOUT ${JSMALLOC_TEST_TIMEOUT}
                       PASS_REGULAR_EXPRESSION "install\\.${t} passed" SKIP_RETURN_CODE 77)
endforeach()
