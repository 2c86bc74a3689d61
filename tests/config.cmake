rerank_add_test(config_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/config_test.cc LIBS rerank_config)
