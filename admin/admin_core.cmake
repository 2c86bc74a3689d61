# Transport-independent admin logic shared by the admin HTTP server and the admin gRPC service.
add_library(rerank_admin_core STATIC ${CMAKE_CURRENT_LIST_DIR}/admin_core.cc)
target_include_directories(rerank_admin_core PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_admin_core PUBLIC
  rerank_live_stats rerank_service_metrics rerank_flag_store rerank_flags_proto rerank_proto
  rerank_score_cache rerank_audit_sink rerank_model_control
  nlohmann_json::nlohmann_json absl::status absl::statusor absl::strings absl::time)
