# The layers (issue 18, docs/design.md). Included from tests/CMakeLists.txt.
#
# layers.check: no include reaches a higher layer, no two folders include
#   each other, only os/os.h from outside os/, a README per layer folder.
# layers.check_selftest: the checker refuses trees made to break each rule.
# layers.upward_include_fails_to_build: compiled against its layer's view,
#   a file that includes a header of the layer above fails; one that
#   includes its own layer's header compiles.
find_program(JSMALLOC_PYTHON3 python3)
if(JSMALLOC_PYTHON3)
  add_test(NAME layers.check
           COMMAND ${JSMALLOC_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/check_layers.py ${PROJECT_SOURCE_DIR})
  add_test(NAME layers.check_selftest
           COMMAND ${JSMALLOC_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/check_layers.py --selftest)
  set_tests_properties(layers.check layers.check_selftest PROPERTIES TIMEOUT 60 LABELS layers)
endif()
add_test(NAME layers.upward_include_fails_to_build
         COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/upward_include.sh ${CMAKE_CXX_COMPILER}
                 ${JSMALLOC_LAYER_VIEWS} ${PROJECT_SOURCE_DIR})
set_tests_properties(layers.upward_include_fails_to_build PROPERTIES TIMEOUT 120 LABELS layers)
