# API messages to and from JSON (protobuf's JSON mapping): common/proto_json.h.
add_library(rerank_proto_json STATIC ${CMAKE_CURRENT_LIST_DIR}/proto_json.cc)
target_include_directories(rerank_proto_json PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_proto_json PUBLIC protobuf::libprotobuf absl::status absl::strings
                      PRIVATE nlohmann_json::nlohmann_json)
