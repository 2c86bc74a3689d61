# Thread-safe LRU cache of cross-encoder scores (torch-free).
add_library(rerank_score_cache STATIC ${CMAKE_CURRENT_LIST_DIR}/score_cache.cc)
target_include_directories(rerank_score_cache PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_score_cache PUBLIC
  absl::status absl::statusor absl::strings absl::synchronization absl::flat_hash_map absl::span)
