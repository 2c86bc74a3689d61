# common/grpc_status.h: absl::Status -> grpc::Status at the gRPC edges (header only).
add_library(rerank_grpc_status INTERFACE)
target_include_directories(rerank_grpc_status INTERFACE ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_grpc_status INTERFACE absl::status gRPC::grpc++)
