rerank_add_test(status_macros_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/status_macros_test.cc
  LIBS rerank_status_macros)
