# FeatureFlags, the named rollout stages and flag validation.
add_library(rerank_feature_flags STATIC ${CMAKE_CURRENT_LIST_DIR}/feature_flags.cc)
target_include_directories(rerank_feature_flags PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_feature_flags PUBLIC absl::status absl::statusor absl::strings)
