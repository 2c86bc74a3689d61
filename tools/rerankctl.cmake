# rerankctl: operator CLI for a running rerankd (admin HTTP plane via libcurl, data plane via gRPC).
find_package(CURL REQUIRED)

# Everything but main(), so tests/rerankctl_test.cc can unit-test parsing, formatting and checks.
add_library(rerankctl_lib STATIC
  ${CMAKE_CURRENT_LIST_DIR}/rerankctl_args.cc
  ${CMAKE_CURRENT_LIST_DIR}/rerankctl_check.cc
  ${CMAKE_CURRENT_LIST_DIR}/rerankctl_format.cc
  ${CMAKE_CURRENT_LIST_DIR}/rerankctl_http.cc)
target_link_libraries(rerankctl_lib PUBLIC rerank_config rerank_json_util rerank_status_macros
                      CURL::libcurl nlohmann_json::nlohmann_json
                      absl::status absl::statusor absl::strings absl::str_format absl::time)

add_executable(rerankctl ${CMAKE_CURRENT_LIST_DIR}/rerankctl.cc)
target_link_libraries(rerankctl PRIVATE rerankctl_lib rerank_proto gRPC::grpc++)
