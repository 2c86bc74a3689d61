# tests/testing/fake_audit_sink.h: in-memory AuditSink for tests (link this target to use it).
add_library(rerank_fake_audit_sink INTERFACE)
target_include_directories(rerank_fake_audit_sink INTERFACE ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_fake_audit_sink INTERFACE rerank_audit_sink absl::synchronization)
