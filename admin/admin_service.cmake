# Admin gRPC API (rerank.admin.v1.Admin) on its own grpc::Server.
add_library(rerank_admin_grpc STATIC ${CMAKE_CURRENT_LIST_DIR}/admin_service.cc)
target_include_directories(rerank_admin_grpc PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_admin_grpc PUBLIC
  rerank_admin_core rerank_proto gRPC::grpc++ absl::status absl::statusor absl::strings
  absl::synchronization Threads::Threads rerank_grpc_status)
