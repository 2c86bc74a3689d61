# `rerankctl rollout` (issue 7 section 6): the state machine, parsing and readings with a fake
# clock (C++), the TEST-ONLY latency fault, and end to end against a real rerankd with that fault
# firing from cache-50 on (advance, rollback, audit, restart/resume, deploy_reranker.sh auto).
rerank_add_test(rerankctl_rollout_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/rerankctl_rollout_test.cc
  LIBS rerankctl_lib)
rerank_add_test(latency_fault_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/latency_fault_test.cc
  LIBS rerank_latency_fault)

add_test(NAME rerankctl_rollout_e2e_test
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/rerankctl_rollout_test.py)
set_tests_properties(rerankctl_rollout_e2e_test PROPERTIES
  TIMEOUT 300 LABELS python ENVIRONMENT
  "RERANK_BUILD_DIR=${CMAKE_BINARY_DIR};RERANK_SOURCE_DIR=${CMAKE_SOURCE_DIR};RERANKCTL=$<TARGET_FILE:rerankctl>;RERANKD=$<TARGET_FILE:rerankd>")
add_dependencies(rerankctl_rollout_test rerankctl_test_deps)
