# Issue 8: identity checks, per-peer keys, pair limits, gRPC server limits, rollback semantics,
# environment flag overrides and the cache rollout by query, over a real gRPC channel.
rerank_add_test(identity_service_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/identity_service_test.cc
                LIBS rerank_app nlohmann_json::nlohmann_json)
add_dependencies(identity_service_test test_models)
