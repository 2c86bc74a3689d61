# rerankctl eval: unit tests (BEIR/TREC readers, trec_eval metrics on the hand-computed fixture in
# tests/testdata/eval, run writer, concurrent rerank driver with a fake scorer) and an end-to-end
# test of the binary against a real rerankd serving the tiny test model.
rerank_add_test(rerankctl_eval_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/rerankctl_eval_test.cc
                LIBS rerankctl_lib)

add_test(NAME rerankctl_eval_e2e_test
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/rerankctl_eval_e2e_test.py)
set_tests_properties(rerankctl_eval_e2e_test PROPERTIES
  TIMEOUT 300 LABELS python ENVIRONMENT
  "RERANK_BUILD_DIR=${CMAKE_BINARY_DIR};RERANK_SOURCE_DIR=${CMAKE_SOURCE_DIR};RERANKCTL=$<TARGET_FILE:rerankctl>;RERANKD=$<TARGET_FILE:rerankd>")
add_dependencies(rerankctl_eval_test rerankctl_test_deps)
