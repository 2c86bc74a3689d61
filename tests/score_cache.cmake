rerank_add_test(score_cache_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/score_cache_test.cc
  LIBS rerank_score_cache)
