# The flags schema's one parser and serializer (flags file, admin JSON, config's flags.initial).
add_library(rerank_flags_codec STATIC ${CMAKE_CURRENT_LIST_DIR}/flags_codec.cc)
target_include_directories(rerank_flags_codec PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_flags_codec PUBLIC
  rerank_feature_flags absl::status absl::statusor nlohmann_json::nlohmann_json
  PRIVATE rerank_json_util rerank_status_macros absl::strings yaml-cpp)
