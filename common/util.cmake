# Small header-only helpers shared by every layer, one copy each.
# RFC 3339 timestamps (FormatRfc3339Millis).
add_library(rerank_time_format INTERFACE)
target_include_directories(rerank_time_format INTERFACE ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_time_format INTERFACE absl::time)
# JSON dump that replaces invalid UTF-8 instead of throwing (DumpJson).
add_library(rerank_json_util INTERFACE)
target_include_directories(rerank_json_util INTERFACE ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_json_util INTERFACE nlohmann_json::nlohmann_json)
# Stable hashes (Fnv1a64).
add_library(rerank_hash INTERFACE)
target_include_directories(rerank_hash INTERFACE ${CMAKE_SOURCE_DIR})
