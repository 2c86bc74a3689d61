# Per-client token-bucket rate limiter with bounded memory.
add_library(rerank_rate_limiter STATIC ${CMAKE_CURRENT_LIST_DIR}/rate_limiter.cc)
target_include_directories(rerank_rate_limiter PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_rate_limiter PUBLIC
  absl::status absl::statusor absl::strings absl::synchronization absl::time absl::flat_hash_map)
