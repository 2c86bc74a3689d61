# rerankctl: unit tests (parsing, formatting, checks) and two driver tests of the binary and the
# deploy/*.sh scripts: against a fake admin HTTP server (contract JSON, error codes) and end to
# end against a real rerankd subprocess with its admin plane.
rerank_add_test(rerankctl_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/rerankctl_test.cc LIBS rerankctl_lib)

set(_rerankctl_env
    "RERANK_BUILD_DIR=${CMAKE_BINARY_DIR};RERANK_SOURCE_DIR=${CMAKE_SOURCE_DIR};RERANKCTL=$<TARGET_FILE:rerankctl>;RERANKD=$<TARGET_FILE:rerankd>")

add_test(NAME rerankctl_fake_admin_test
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/rerankctl_fake_admin_test.py)
set_tests_properties(rerankctl_fake_admin_test PROPERTIES
  TIMEOUT 120 LABELS python ENVIRONMENT "${_rerankctl_env}")

add_test(NAME rerankctl_e2e_test
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/rerankctl_e2e_test.py)
set_tests_properties(rerankctl_e2e_test PROPERTIES
  TIMEOUT 300 LABELS python ENVIRONMENT "${_rerankctl_env}")
# The driver tests run the binaries; build them with the test binaries.
add_custom_target(rerankctl_test_deps ALL DEPENDS rerankctl rerankd test_models)
add_dependencies(rerankctl_test rerankctl_test_deps)
