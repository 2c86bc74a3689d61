# TEST-ONLY latency fault (config testing.*): a Scorer decorator, wired in app/ when configured.
add_library(rerank_latency_fault STATIC ${CMAKE_CURRENT_LIST_DIR}/latency_fault.cc)
target_include_directories(rerank_latency_fault PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_latency_fault PUBLIC rerank_feature_flags absl::status
                      absl::statusor absl::strings absl::time)
