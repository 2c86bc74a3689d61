# Configuration: YAML + environment overrides + validation.
add_library(rerank_config STATIC ${CMAKE_CURRENT_LIST_DIR}/config.cc)
target_link_libraries(rerank_config PUBLIC rerank_feature_flags absl::status absl::statusor absl::strings yaml-cpp
                      PRIVATE rerank_flags_codec rerank_json_util rerank_status_macros)
