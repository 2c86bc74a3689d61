# FeatureFlags <-> admin.v1.Flags (admin/flags_proto.h).
add_library(rerank_flags_proto STATIC ${CMAKE_CURRENT_LIST_DIR}/flags_proto.cc)
target_include_directories(rerank_flags_proto PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_flags_proto PUBLIC
  rerank_proto rerank_proto_json rerank_flag_store rerank_feature_flags nlohmann_json::nlohmann_json
  absl::status absl::statusor)
