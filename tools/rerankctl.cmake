# rerankctl: operator CLI for a running rerankd (admin HTTP plane via libcurl, data plane via gRPC).
find_package(CURL REQUIRED)

# Everything but main(), so tests/rerankctl_test.cc can unit-test parsing, formatting and checks.
add_library(rerankctl_lib STATIC
  ${CMAKE_CURRENT_LIST_DIR}/rerankctl_args.cc
  ${CMAKE_CURRENT_LIST_DIR}/rerankctl_check.cc
  ${CMAKE_CURRENT_LIST_DIR}/rerankctl_eval.cc
  ${CMAKE_CURRENT_LIST_DIR}/rerankctl_eval_data.cc
  ${CMAKE_CURRENT_LIST_DIR}/rerankctl_format.cc
  ${CMAKE_CURRENT_LIST_DIR}/rerankctl_http.cc
  ${CMAKE_CURRENT_LIST_DIR}/rerankctl_rollout.cc
  ${CMAKE_CURRENT_LIST_DIR}/rerankctl_token.cc)
# The admin answers are parsed into the contract's messages (admin.proto) with common/proto_json.
target_link_libraries(rerankctl_lib PUBLIC rerank_config rerank_proto rerank_proto_json
                      rerank_status_macros CURL::libcurl nlohmann_json::nlohmann_json absl::status
                      absl::statusor absl::strings absl::str_format absl::synchronization absl::time)

add_executable(rerankctl ${CMAKE_CURRENT_LIST_DIR}/rerankctl.cc)
target_link_libraries(rerankctl PRIVATE rerankctl_lib gRPC::grpc++)
