rerank_add_test(feature_flags_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/feature_flags_test.cc
  LIBS rerank_feature_flags)
rerank_add_test(flag_store_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/flag_store_test.cc
  LIBS rerank_flag_store rerank_fake_audit_sink yaml-cpp)
