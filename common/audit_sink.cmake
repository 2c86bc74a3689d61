# The AuditSink interface (header only).
add_library(rerank_audit_sink INTERFACE)
target_include_directories(rerank_audit_sink INTERFACE ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_audit_sink INTERFACE nlohmann_json::nlohmann_json)
