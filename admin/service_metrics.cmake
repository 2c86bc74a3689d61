# Prometheus metrics of the service (prometheus-cpp core; /metrics is served by admin/http_server).
add_library(rerank_service_metrics STATIC ${CMAKE_CURRENT_LIST_DIR}/service_metrics.cc)
target_include_directories(rerank_service_metrics PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_service_metrics PUBLIC
  prometheus-cpp::core rerank_score_cache rerank_rate_limiter rerank_audit_log
  rerank_feature_flags rerank_flag_store rerank_observers absl::status absl::statusor absl::strings
  absl::synchronization absl::time)
