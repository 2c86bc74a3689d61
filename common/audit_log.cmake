# JSON-lines audit log with a background writer, rotation and retention.
find_package(ZLIB REQUIRED)  # gzip of rotated files
add_library(rerank_audit_log STATIC ${CMAKE_CURRENT_LIST_DIR}/audit_log.cc)
target_include_directories(rerank_audit_log PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_audit_log PUBLIC
  rerank_audit_sink absl::status absl::statusor absl::strings absl::synchronization absl::time
  Threads::Threads
  PRIVATE rerank_json_util rerank_status_macros rerank_time_format spdlog::spdlog ZLIB::ZLIB)
