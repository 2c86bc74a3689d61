# Sliding-window request statistics for /health (torch-free).
add_library(rerank_live_stats STATIC ${CMAKE_CURRENT_LIST_DIR}/live_stats.cc)
target_include_directories(rerank_live_stats PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_live_stats PUBLIC
  rerank_observers absl::status absl::statusor absl::strings absl::synchronization absl::time)
