# Admin plane tests: live stats, metrics, the admin HTTP/gRPC servers on real components, and the
# admin plane wired into a full RerankServer (fake scorer; real loopback HTTP and gRPC).
rerank_add_test(admin_live_stats_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/admin_live_stats_test.cc
  LIBS rerank_live_stats rerank_observers)
rerank_add_test(admin_service_metrics_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/admin_service_metrics_test.cc
  LIBS rerank_service_metrics rerank_batcher prometheus-cpp::core)
rerank_add_test(admin_plane_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/admin_plane_test.cc
  LIBS rerank_admin_http rerank_admin_grpc rerank_config)
rerank_add_test(admin_server_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/admin_server_test.cc
  LIBS rerank_app rerank_rollout)
add_dependencies(admin_server_test test_models)
# Fallback for the tiny model's location when RERANK_BUILD_DIR is not in the environment.
target_compile_definitions(admin_server_test PRIVATE RERANK_TEST_BUILD_DIR="${CMAKE_BINARY_DIR}")
rerank_add_test(proto_json_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/proto_json_test.cc
  LIBS rerank_proto_json rerank_flags_proto)
