rerank_add_test(rollout_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/rollout_test.cc
  LIBS rerank_rollout rerank_hash)
