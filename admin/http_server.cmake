# Admin HTTP API on a small owned socket server (see admin/http_server.h for why not civetweb).
add_library(rerank_admin_http STATIC ${CMAKE_CURRENT_LIST_DIR}/http_server.cc)
target_include_directories(rerank_admin_http PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_admin_http PUBLIC
  rerank_admin_core rerank_proto_json absl::status absl::statusor absl::strings absl::synchronization
  Threads::Threads)
