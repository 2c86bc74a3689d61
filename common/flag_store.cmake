# Feature-flags file store (YAML, watched); re-exports the codec's JSON/YAML helpers.
add_library(rerank_flag_store STATIC ${CMAKE_CURRENT_LIST_DIR}/flag_store.cc)
target_include_directories(rerank_flag_store PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_flag_store PUBLIC
  rerank_feature_flags rerank_flags_codec rerank_audit_sink absl::status absl::statusor
  absl::strings absl::synchronization absl::time Threads::Threads
  PRIVATE rerank_status_macros rerank_time_format spdlog::spdlog)
