rerank_add_test(audit_log_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/audit_log_test.cc
  LIBS rerank_audit_log rerank_fake_audit_sink)
