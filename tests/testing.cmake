# Shared test helpers (fakes) and the rerank_add_test() helper every test fragment uses.
add_library(rerank_testing INTERFACE)
target_include_directories(rerank_testing INTERFACE ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_testing INTERFACE absl::synchronization absl::time GTest::gmock GTest::gtest_main)

include(GoogleTest)
# rerank_add_test(<name> SOURCES a.cc ... LIBS lib ...): one gtest binary, tests discovered by ctest.
function(rerank_add_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE rerank_testing ${T_LIBS})
  gtest_discover_tests(${name}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
    # No RERANK_SHARED_DIR: tests read only the repository (third_party/, tests/testdata/).
    PROPERTIES ENVIRONMENT "RERANK_BUILD_DIR=${CMAKE_BINARY_DIR}"
    DISCOVERY_TIMEOUT 60)
endfunction()
