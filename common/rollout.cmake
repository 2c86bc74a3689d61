# Sticky percentage rollout (stable hash buckets).
add_library(rerank_rollout STATIC ${CMAKE_CURRENT_LIST_DIR}/rollout.cc)
target_include_directories(rerank_rollout PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_rollout PRIVATE rerank_hash)
