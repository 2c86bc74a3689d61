# Admin HTTP API on the shared HTTP layer (common/http.cmake; see admin/http_server.h).
add_library(rerank_admin_http STATIC ${CMAKE_CURRENT_LIST_DIR}/http_server.cc)
target_include_directories(rerank_admin_http PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_admin_http PUBLIC
  rerank_admin_core rerank_http rerank_proto_json absl::status absl::statusor absl::strings)
