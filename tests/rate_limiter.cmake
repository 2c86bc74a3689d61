rerank_add_test(rate_limiter_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/rate_limiter_test.cc
  LIBS rerank_rate_limiter)
